"""The one shape every check has: ``Check.run(model, data, ctx) -> CheckOutput``.

A check measures; it never writes files (the runner does). Options come from a plan's
``[checks.<name>]`` table into the check's ``Config`` dataclass. Checks whose work is per
image subclass ``SampleCheck``: the runner shards ``measure`` over the evaluation images
(so runs resume and merge) and calls ``summarize`` once on the merged per-sample table.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd
import torch

from ..artifacts import ArtifactKey, Artifacts
from ..data import Split
from ..estimate import CostInputs, Passes, Probe, Work
from ..models import AuditedModel
from ..options import options_dict, read_options, validate_options
from ..seeding import SampleStreams


@dataclass
class AuditData:
    """What a check sees of the dataset: the evaluation sample and, if any, the training split.

    Images are already converted to the model's channels and size.
    """

    name: str
    classes: list[str]
    eval: Split
    train: Split | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def attributes(self) -> list[str]:
        return list(self.eval.attrs.columns)

    def with_eval(self, split: Split) -> AuditData:
        return AuditData(self.name, self.classes, split, self.train)


@dataclass
class CheckOutput:
    """What a check returns: tidy rows, optional per-sample records, figures (PNG bytes) and
    artifacts (by typed key: what its ``summarize`` or later checks reuse, e.g. adversarial examples
    for ``confidence``)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    samples: pd.DataFrame | None = None
    figures: dict[str, bytes] = field(default_factory=dict)
    artifacts: Artifacts = field(default_factory=Artifacts)
    warnings: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class CheckContext:
    """Run settings shared by checks: device, seed, batch size, and the artifacts of earlier checks that
    this check ``needs`` or ``uses``."""

    device: str = "cpu"
    seed: int = 0
    batch_size: int = 256
    progress: bool = False
    artifacts: Artifacts = field(default_factory=Artifacts)
    baseline: pd.DataFrame | None = None
    warnings: list[str] = field(default_factory=list)
    eval_size: int = 0  # evaluation images in the whole run, of which a shard is part (0: not sharded)

    def generator(self, *salt: object, device: str | None = None) -> torch.Generator:
        """A torch generator seeded from the run seed and ``salt`` (e.g. the check name), for draws
        that belong to the whole run; per-image draws take ``streams``. (The 0 is where a shard
        number once went; keeping it keeps the draws, and so the results, of earlier versions.)"""
        digest = hashlib.sha256(repr((self.seed, 0, *salt)).encode()).digest()
        gen = torch.Generator(device=device or "cpu")
        gen.manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
        return gen

    def streams(self, ids: Sequence[str], *salt: object, device: str | None = None) -> SampleStreams:
        """One random stream per image, keyed by (run seed, ``salt``, sample id): an image's draws
        do not depend on the shard or batch it is measured in."""
        return SampleStreams.for_ids(self.seed, ids, *salt, device=device or "cpu")

    def warn(self, message: str) -> None:
        self.warnings.append(message)


@dataclass(frozen=True)
class Headline:
    """A check's one number for scorecards, comparisons and default verdicts.

    ``better`` is the safer direction, ``"higher"`` (accuracy, minimal perturbation) or
    ``"lower"`` (flip rates, inputs accepted); ``kind`` is ``"rate"`` for a share in [0, 1]
    and ``"value"`` for any other number. ``where`` holds the long-table columns that select
    the row the number comes from (``metric`` and its parameters), so a gate can point at it.
    """

    label: str
    value: float
    better: str
    kind: str = "rate"
    ci_low: float = math.nan
    ci_high: float = math.nan
    n: int | None = None
    where: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: pd.Series, label: str, better: str, kind: str = "rate") -> Headline:
        """The headline read off one long-table row (its parameters become ``where``)."""
        n = row.get("n")
        params = {k: v for k, v in row.items() if k not in _NOT_PARAMETERS and not _missing(v)}
        return cls(
            label,
            float(row["value"]),
            better,
            kind,
            _float_or_nan(row.get("ci_low")),
            _float_or_nan(row.get("ci_high")),
            None if _missing(n) else int(n),
            {"metric": row["metric"], **params},
        )


_NOT_PARAMETERS = {"model", "check", "metric", "value", "n", "ci_low", "ci_high", "headline"}


def _missing(v: Any) -> bool:
    return v is None or (not isinstance(v, (list, tuple, dict)) and bool(pd.isna(v)))


def _float_or_nan(v: Any) -> float:
    return math.nan if _missing(v) else float(v)


@dataclass
class NoConfig:
    """A check without options."""


class Check:
    """Base class of all checks; subclasses set ``name`` and implement ``run``.

    ``provides`` lists the artifacts the check hands on to later checks; ``needs`` those it cannot
    run without (the check that provides them must run too), ``uses`` those it reads when their
    provider ran. The runner orders checks by these declarations (``checks.order``).
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    needs_train: ClassVar[bool] = False
    reads_train: ClassVar[bool] = False  # reads the training split when there is one (it is decoded ahead)
    needs: ClassVar[tuple[ArtifactKey[Any], ...]] = ()
    uses: ClassVar[tuple[ArtifactKey[Any], ...]] = ()
    provides: ClassVar[tuple[ArtifactKey[Any], ...]] = ()
    Config: ClassVar[type] = NoConfig

    def __init__(self, config: Any | None = None) -> None:
        self.config = validate_options(self.name, config) if config is not None else self.Config()

    @classmethod
    def from_options(cls, options: dict[str, Any] | None) -> Check:
        """The check configured by a plan's ``[checks.<name>]`` table (see ``robustcnn.options``)."""
        return cls(read_options(cls.name, cls.Config, options))

    def config_dict(self) -> dict[str, Any]:
        return options_dict(self.config)

    def preflight(self, model: AuditedModel, data: AuditData) -> None:
        """Raise ``InvalidInputError`` if this check cannot run on this model and data.

        The runner calls it for every selected check before any work starts, so a long audit
        never fails late on something knowable up front (a missing attribute, a bad target).
        """

    def run(self, model: AuditedModel, data: AuditData, ctx: CheckContext) -> CheckOutput:
        raise NotImplementedError

    def headline(self, table: pd.DataFrame) -> Headline | None:
        """The one number of this check for a scorecard, or None when the table has none."""
        return None

    def estimate_passes(self, inputs: CostInputs) -> Passes | None:
        """Images this check will push through the model with its options on data like ``inputs``,
        forward and backward (``robustcnn.estimate``), for the plan printed before a run; None when
        the check cannot say (the plan then shows '?')."""
        return None

    def estimate_work(self, inputs: CostInputs, probe: Probe) -> Work | None:
        """Seconds this check spends besides model calls (generating images, bookkeeping, figures), timed
        on the calibration images by ``probe`` before the run; None when the check cannot say."""
        return None


class SampleCheck(Check):
    """A check measured image by image: ``measure`` a shard, ``summarize`` the merged records."""

    shard_size: ClassVar[int] = 250

    def measure(self, model: AuditedModel, batch: Split, ctx: CheckContext) -> CheckOutput:
        """Per-sample records (``samples``, one row per image, with a ``sample`` id column) and artifacts."""
        raise NotImplementedError

    def summarize(self, samples: pd.DataFrame, artifacts: Artifacts, data: AuditData, ctx: CheckContext) -> CheckOutput:
        """Rows from the merged records; ``artifacts`` holds the shards' artifacts, concatenated."""
        raise NotImplementedError

    def run(self, model: AuditedModel, data: AuditData, ctx: CheckContext) -> CheckOutput:
        part = self.measure(model, data.eval, ctx)
        out = self.summarize(part.samples if part.samples is not None else pd.DataFrame(), part.artifacts, data, ctx)
        out.warnings = part.warnings + out.warnings
        out.samples = part.samples if out.samples is None else out.samples
        return out


def batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Apply ``fn`` to ``x`` in batches and concatenate the results."""
    return torch.cat([fn(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]) if len(x) else x

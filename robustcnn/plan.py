"""Audit plans: which model(s), which data, which checks with which options, and gates.

A plan is a TOML file (see ``audits/demo.toml``) or the same structure built from CLI
flags; flags override the file. Unknown keys are errors, so typos never pass silently.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .data import DEFAULT_TRAIN_N, Policy
from .errors import InvalidInputError, UsageError
from .models import ModelRef

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MODEL_KEYS = {"spec", "arch", "num_classes", "in_channels", "input_size", "mean", "std", "trust_model", "name"}
DATA_KEYS = {"spec", "n", "resize", "center_crop", "train_n"}
RUN_KEYS = {
    "seed",
    "device",
    "batch_size",
    "checks",
    "out",
    "baseline",
    "shard_size",
    "max_minutes",
    "num_cpus",
    "num_gpus",
}
TOP_KEYS = {"model", "data", "run", "checks", "gate", "description"}
DEFAULT_CHECKS = ["clean"]
SEED_MAX = 2**32 - 1  # scikit-learn's random_state and numpy's RandomState take 0 .. 2**32 - 1


@dataclass
class Plan:
    """A resolved plan; ``to_dict()`` is what ``meta.json`` records."""

    models: list[ModelRef] = field(default_factory=lambda: [ModelRef()])
    data: str = "mnist5k"
    n: int | None = None
    resize: int | None = None
    center_crop: tuple[int, int] | None = None
    train_n: int | None = DEFAULT_TRAIN_N
    seed: int = 0
    device: str = "cpu"
    batch_size: int | None = None  # None: chosen per model from its activation memory (models.batching)
    checks: list[str] = field(default_factory=lambda: list(DEFAULT_CHECKS))
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    out: str | None = None
    baseline: str | None = None
    shard_size: int | None = None
    max_minutes: float | None = None  # stop at the first task boundary after this many minutes (partial report)
    gates: list[dict[str, Any]] = field(default_factory=list)
    source: str | None = None
    optional: list[str] = field(default_factory=list)  # checks skipped with a note when the data cannot feed them
    num_cpus: float = 1  # what each Ray worker reserves (see docs/scale-out.md); results do not depend on it
    num_gpus: float | None = None  # None: 1 with --device cuda, else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "models": [m.describe() for m in self.models],
            "data": self.data,
            "n": self.n,
            "resize": self.resize,
            "center_crop": list(self.center_crop) if self.center_crop else None,
            "train_n": self.train_n,
            "seed": self.seed,
            "device": self.device,
            "batch_size": self.batch_size,
            "checks": self.checks,
            "options": self.options,
            "baseline": self.baseline,
            "max_minutes": self.max_minutes,
            "gates": self.gates,
        }

    @property
    def policy(self) -> Policy:
        """How images reach the model's input: resize the shorter side, then centre-crop."""
        return Policy(self.resize, self.center_crop)

    def with_overrides(self, **overrides: Any) -> Plan:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def parse_set(items: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``CHECK.KEY=VALUE`` overrides (the CLI's ``--set``, the API's ``overrides``) as option tables;
    VALUE is read as TOML, else taken as a string (the check's options then coerce and check it)."""
    options: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, raw = item.partition("=")
        check, dot, key = target.partition(".")
        if not sep or not dot or not check or not key:
            raise UsageError(f"--set takes CHECK.KEY=VALUE, e.g. --set adversarial.norms='[\"linf\"]', got '{item}'")
        try:
            parsed = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            parsed = raw
        options.setdefault(check, {})[key] = parsed
    return options


def merge_options(*tables: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Option tables merged option by option, a later table winning (defaults < plan < overrides)."""
    merged: dict[str, dict[str, Any]] = {}
    for table in tables:
        for check, values in (table or {}).items():
            merged.setdefault(check, {}).update(values)
    return merged


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan file; errors name the file and the key."""
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"plan file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"plan {path} is not valid TOML: {exc}") from exc
    plan = plan_from_dict(raw, str(path))
    return plan


def plan_from_dict(raw: dict[str, Any], source: str = "<dict>") -> Plan:
    _reject_unknown(raw, TOP_KEYS, source, "top level")
    models_raw = raw.get("model", {"spec": "demo:mnist-cnn"})
    if isinstance(models_raw, dict):
        models_raw = [models_raw]
    models = [_model_ref(m, source) for m in models_raw]
    if not models:
        raise InvalidInputError(f"{source}: the plan names no model")
    data = raw.get("data", {})
    _reject_unknown(data, DATA_KEYS, source, "[data]")
    run = raw.get("run", {})
    _reject_unknown(run, RUN_KEYS, source, "[run]")
    options = raw.get("checks", {})
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        raise InvalidInputError(f"{source}: [checks.<name>] tables must hold each check's options")
    checks = _typed(run, "checks", list, source, "[run]", "a list of check names", list(DEFAULT_CHECKS))
    if not all(isinstance(c, str) for c in checks):
        raise InvalidInputError(f"{source}: [run] checks must be a list of check names, got {checks!r}")
    plan = Plan(
        models=models,
        data=_typed(data, "spec", str, source, "[data]", "a dataset name or path", "mnist5k"),
        n=_typed(data, "n", int, source, "[data]", "a positive integer"),
        resize=_typed(data, "resize", int, source, "[data]", "a positive integer"),
        center_crop=_crop(data.get("center_crop"), source),
        train_n=_typed(data, "train_n", int, source, "[data]", "a positive integer", DEFAULT_TRAIN_N),
        seed=_typed(run, "seed", int, source, "[run]", f"an integer from 0 to {SEED_MAX}", 0),
        device=_typed(run, "device", str, source, "[run]", "cpu, cuda or cuda:N", "cpu"),
        batch_size=_typed(run, "batch_size", int, source, "[run]", "a positive integer"),
        checks=list(checks),
        options={k: dict(v) for k, v in options.items()},
        out=_typed(run, "out", str, source, "[run]", "a folder path"),
        baseline=_typed(run, "baseline", str, source, "[run]", "a report folder path"),
        shard_size=_typed(run, "shard_size", int, source, "[run]", "a positive integer"),
        max_minutes=_typed(run, "max_minutes", (int, float), source, "[run]", "a number of minutes >= 0"),
        gates=raw.get("gate", []),
        source=source,
        num_cpus=_typed(run, "num_cpus", (int, float), source, "[run]", "a positive number", 1),
        num_gpus=_typed(run, "num_gpus", (int, float), source, "[run]", "a number from 0"),
    )
    validate_plan(plan)
    return plan


def validate_plan(plan: Plan) -> None:
    """Check names, option tables and numbers, before anything is loaded or trained."""
    from .checks import get_check

    if not plan.checks:
        raise InvalidInputError("the plan selects no checks; list some in [run] checks or --checks")
    for name in plan.checks:
        get_check(name)
    for name in plan.options:
        get_check(name)
    if len(set(plan.checks)) != len(plan.checks):
        raise InvalidInputError("a check is listed twice in the plan")
    if plan.n is not None and (not _is_int(plan.n) or plan.n < 1):
        raise InvalidInputError(f"n must be a positive integer, got {plan.n!r}")
    if not _is_int(plan.seed) or not 0 <= plan.seed <= SEED_MAX:
        raise InvalidInputError(
            f"seed must be an integer from 0 to {SEED_MAX}, got {plan.seed!r}; choose a seed in that range"
        )
    if plan.batch_size is not None and (not _is_int(plan.batch_size) or plan.batch_size < 1):
        raise InvalidInputError(f"batch_size must be a positive integer, got {plan.batch_size!r}")
    if not _is_number(plan.num_cpus) or plan.num_cpus <= 0:
        raise InvalidInputError(f"num_cpus must be a positive number, got {plan.num_cpus!r}")
    if plan.num_gpus is not None and (not _is_number(plan.num_gpus) or plan.num_gpus < 0):
        raise InvalidInputError(f"num_gpus must be a number from 0, got {plan.num_gpus!r}")
    if plan.max_minutes is not None and (not _is_number(plan.max_minutes) or not 0 <= plan.max_minutes < math.inf):
        raise InvalidInputError(f"max_minutes must be a number of minutes >= 0, got {plan.max_minutes!r}")
    if plan.shard_size is not None and (not _is_int(plan.shard_size) or plan.shard_size < 1):
        raise InvalidInputError(f"shard_size must be a positive integer, got {plan.shard_size!r}")
    for key in ("resize", "train_n"):
        value = getattr(plan, key)
        if value is not None and (not _is_int(value) or value < 1):
            raise InvalidInputError(f"{key} must be a positive integer, got {value!r}")
    crop = plan.center_crop
    if crop is not None and (len(crop) != 2 or not all(_is_int(v) and v >= 1 for v in crop)):
        raise InvalidInputError(f"center_crop must be two positive integers HxW, e.g. 224x224, got {list(crop)!r}")
    for ref in plan.models:
        validate_model_ref(ref)


def validate_model_ref(ref: ModelRef) -> None:
    """The wrapper's values (--num-classes, --channels, --input-size, --mean, --std, --name), exit 4 when wrong."""
    if ref.num_classes is not None and (not _is_int(ref.num_classes) or ref.num_classes < 2):
        raise InvalidInputError(f"num_classes must be an integer of at least 2, got {ref.num_classes!r}")
    if ref.in_channels is not None and (not _is_int(ref.in_channels) or ref.in_channels < 1):
        raise InvalidInputError(f"in_channels must be a positive integer, got {ref.in_channels!r}")
    if ref.input_size is not None:
        size = tuple(ref.input_size)
        if len(size) != 2 or not all(_is_int(v) and v >= 1 for v in size):
            shown = "x".join(map(str, size)) if size and all(_is_int(v) for v in size) else repr(list(size))
            raise InvalidInputError(f"input size must be two positive integers HxW, e.g. 224x224, got {shown}")
    for key, values in (("mean", ref.mean), ("std", ref.std)):
        if values is None:
            continue
        numbers = tuple(values)
        if not numbers or not all(_is_number(v) and math.isfinite(v) for v in numbers):
            raise InvalidInputError(
                f"{key} must be finite numbers, one per channel (or one for all), got {list(numbers)!r}"
            )
        if key == "std" and any(v <= 0 for v in numbers):
            raise InvalidInputError(f"std values must be positive, got {list(numbers)!r}")
    if ref.name is not None and (not isinstance(ref.name, str) or not _is_folder_name(ref.name)):
        raise InvalidInputError(f"model name {ref.name!r} must be a plain folder name (no '/', not '.' or '..')")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_folder_name(name: str) -> bool:
    return bool(name.strip()) and name not in (".", "..") and not any(c in name for c in "/\\\0")


def _typed(
    table: dict[str, Any],
    key: str,
    kind: type | tuple[type, ...],
    source: str,
    where: str,
    expected: str,
    default: Any = None,
) -> Any:
    """``table[key]`` if it has the type ``kind`` (an int is not a bool), else a one-line error."""
    if key not in table:
        return default
    value = table[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidInputError(f"{source}: {where} {key} must be {expected}, got {value!r}")
    return value


def _crop(value: Any, source: str) -> tuple[int, int] | None:
    """``center_crop = 224`` or ``[224, 224]`` as (H, W)."""
    if value is None:
        return None
    values = [value, value] if isinstance(value, int) else value
    if not isinstance(values, list) or len(values) != 2 or not all(_is_int(v) for v in values):
        raise InvalidInputError(f"{source}: center_crop must be an integer or [H, W], got {value!r}")
    return (values[0], values[1])


def _reject_unknown(table: Any, known: set[str], source: str, where: str) -> None:
    if not isinstance(table, dict):
        raise InvalidInputError(f"{source}: {where} must be a table")
    unknown = sorted(set(table) - known)
    if unknown:
        raise InvalidInputError(
            f"{source}: unknown key {', '.join(map(repr, unknown))} in {where}; known keys: {', '.join(sorted(known))}"
        )


def _model_ref(table: dict[str, Any], source: str) -> ModelRef:
    _reject_unknown(table, MODEL_KEYS, source, "[model]")
    if "spec" not in table:
        raise InvalidInputError(f'{source}: [model] needs spec = "path/to/model.pt" or "demo:mnist-cnn"')
    where = "[model]"
    size = _typed(table, "input_size", list, source, where, "[height, width]")
    mean = _typed(table, "mean", list, source, where, "a list of numbers, one per channel")
    std = _typed(table, "std", list, source, where, "a list of numbers, one per channel")
    return ModelRef(
        spec=_typed(table, "spec", str, source, where, "a model path or demo:NAME"),
        arch=_typed(table, "arch", str, source, where, "torchvision:NAME, demo:NAME or package.module:factory"),
        num_classes=_typed(table, "num_classes", int, source, where, "an integer of at least 2"),
        in_channels=_typed(table, "in_channels", int, source, where, "a positive integer"),
        input_size=tuple(size) if size is not None else None,
        mean=tuple(mean) if mean is not None else None,
        std=tuple(std) if std is not None else None,
        trust=_typed(table, "trust_model", bool, source, where, "true or false", False),
        name=_typed(table, "name", str, source, where, "a plain folder name"),
    )

"""``Report``: one audited model's tables, metadata and figures, loaded from its directory."""

from __future__ import annotations

import glob
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..errors import InvalidInputError

if TYPE_CHECKING:
    from ..checks import Headline

REPORT_FILES = ("results.parquet", "results.csv", "samples.parquet", "meta.json", "summary.md", "report.html")


@dataclass
class Report:
    """``table``: the long results table; ``samples``: per-sample records; ``meta``: meta.json."""

    path: Path | None
    table: pd.DataFrame
    samples: pd.DataFrame = field(default_factory=pd.DataFrame)
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path, partial: bool = False) -> Report:
        """The report in ``path``; a partial one (stopped by ``--max-minutes``) only with ``partial``."""
        path = Path(path)
        meta_path = path / "meta.json"
        if not meta_path.exists():
            raise InvalidInputError(f"{path} is not a complete robustcnn report (no meta.json); rerun the audit")
        try:
            meta = json.loads(meta_path.read_text())
            table = pd.read_parquet(path / "results.parquet")
        except Exception as exc:
            raise InvalidInputError(f"cannot read report {path}: {exc}") from exc
        if meta.get("status") != "complete" and not (partial and meta.get("status") == "partial"):
            raise InvalidInputError(f"report {path} is incomplete (status {meta.get('status')!r}); rerun with --resume")
        samples_path = path / "samples.parquet"
        samples = pd.read_parquet(samples_path) if samples_path.exists() else pd.DataFrame()
        return cls(path, table, samples, meta)

    @property
    def model(self) -> str:
        return str(self.meta.get("model", {}).get("name", "model"))

    @property
    def figures(self) -> dict[str, dict[str, Path]]:
        """Figure files per check: ``{check: {name: path}}``."""
        if self.path is None:
            return {}
        found: dict[str, dict[str, Path]] = {}
        for png in sorted((self.path / "figures").glob("*/*.png")):
            found.setdefault(png.parent.name, {})[png.stem] = png
        return found

    def check_table(self, check: str) -> pd.DataFrame:
        """The rows of one check, with the columns that are empty for it dropped."""
        return self.table[self.table["check"] == check].dropna(axis=1, how="all").reset_index(drop=True)

    def headlines(self) -> dict[str, Headline]:
        """``{check: Headline}``: each check's headline number, from the check class."""
        from ..checks import load_registry

        registry = load_registry()
        result = {}
        for check in dict.fromkeys(self.table["check"]):
            cls = registry.get(check)
            headline = cls().headline(self.check_table(check)) if cls is not None else None
            if headline is not None:
                result[check] = headline
        return result

    def summary(self) -> pd.DataFrame:
        """A wide one-row view of this model: one column per check headline."""
        values = {h.label: h.value for h in self.headlines().values()}
        return pd.DataFrame([values], index=pd.Index([self.model], name="model"))

    @staticmethod
    def compare(reports: Iterable[Report | str | Path], full: bool = False) -> pd.DataFrame:
        """Models side by side, as ``robustcnn report compare``: one row per check headline
        (``full=True``: per table row), one value column per model, then deltas to the first."""
        from ..reports.compare import compare_headlines, compare_tables

        loaded = [r if isinstance(r, Report) else Report.load(r) for r in reports]
        if not loaded:
            raise InvalidInputError("nothing to compare: give at least one report directory")
        return compare_tables(loaded) if full else compare_headlines(loaded)

    @staticmethod
    def summaries(reports: Iterable[Report | str | Path]) -> pd.DataFrame:
        """The ``summary()`` rows of several reports in one frame: one row per model."""
        loaded = [r if isinstance(r, Report) else Report.load(r) for r in reports]
        return pd.concat([r.summary() for r in loaded], sort=False)

    @staticmethod
    def concat(reports: Iterable[Report | str | Path]) -> pd.DataFrame:
        """The long tables of several reports in one frame (the ``model`` column tells them apart)."""
        loaded = [r if isinstance(r, Report) else Report.load(r) for r in reports]
        return pd.concat([r.table for r in loaded], ignore_index=True, sort=False)


def expand_report_paths(patterns: Iterable[str]) -> list[Path]:
    """Report directories from paths or globs, in the order given, without duplicates."""
    paths: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) or [pattern]
        for match in matches:
            p = Path(match)
            if p not in paths:
                paths.append(p)
    return paths

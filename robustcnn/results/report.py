"""``Report``: one audited model's tables, metadata and figures, loaded from its directory.

This is the results layer's reader; the public ``robustcnn.Report`` (``reports.report``) adds what
needs the check registry: headlines, summaries and comparisons."""

from __future__ import annotations

import glob
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import InvalidInputError

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

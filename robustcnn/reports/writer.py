"""Write a report directory so that it is complete or visibly incomplete, never half-written.

``meta.json`` is removed first and written last with ``status = "complete"``; every file is
written under a temporary name and renamed into place.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from .report import Report
from .schema import parquet_safe


def begin(out: Path) -> None:
    """Mark ``out`` as in progress: drop the completion marker of an earlier run."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "meta.json").unlink(missing_ok=True)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def write_report(out: Path, table: pd.DataFrame, samples: pd.DataFrame, meta: dict[str, Any], figures: dict[str, dict[str, bytes]]) -> Report:
    """Write tables, figures, summary.md and report.html, then meta.json; return the Report."""
    from .html import render_html
    from .markdown import render_summary

    begin(out)
    atomic_write(out / "results.parquet", lambda p: parquet_safe(table).to_parquet(p, index=False))
    atomic_write(out / "results.csv", lambda p: table.to_csv(p, index=False, float_format="%.10g"))
    atomic_write(out / "samples.parquet", lambda p: parquet_safe(samples).to_parquet(p, index=False))
    _write_figures(out, figures)
    meta = {**meta, "status": "complete"}
    report = Report(out, table, samples, meta)
    atomic_write(out / "summary.md", lambda p: p.write_text(render_summary(report)))
    atomic_write(out / "report.html", lambda p: p.write_text(render_html(report)))
    atomic_write(out / "meta.json", lambda p: p.write_text(json.dumps(meta, indent=2, default=str)))
    return report


def _write_figures(out: Path, figures: dict[str, dict[str, bytes]]) -> None:
    tmp = out / f".figures.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for check, named in figures.items():
        folder = tmp / check
        folder.mkdir(parents=True, exist_ok=True)
        for name, png in named.items():
            (folder / f"{name}.png").write_bytes(png)
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "figures", ignore_errors=True)
    os.replace(tmp, out / "figures")

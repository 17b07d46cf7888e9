"""``index.html`` and ``comparison.csv`` in the common folder of a many-model audit.

The page links each model's ``report.html``, shows the gate verdict of each model when gates
ran, and holds the comparison section: every check's headline side by side (``compare_headlines``)
and the full aligned table (``compare_tables``), both with the change against the first model.
Every string from data is escaped; the page loads nothing from the network.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import InvalidInputError
from ..results.writer import atomic_write
from .compare import compare_headlines, compare_tables, labels_for
from .scorecard import format_value

MARKER = "<!-- robustcnn index -->"
STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:.2em .5em;text-align:right}th{background:#eee}"
    ".fail{color:#b00;font-weight:bold}.pass{color:#070}.warn{color:#a60}"
)


def write_index(root: Path, reports: Sequence[Any], verdicts: dict[str, Sequence[Any]] | None = None) -> list[Path]:
    """Write ``root/index.html`` and ``root/comparison.csv`` for ``reports`` (several models); return the paths."""
    check_index_target(root)
    root.mkdir(parents=True, exist_ok=True)
    index, csv_path = root / "index.html", root / "comparison.csv"
    table = compare_tables(reports)
    atomic_write(csv_path, lambda p: table.to_csv(p, index=False, float_format="%.10g"))
    page = render_index(root, reports, compare_headlines(reports), table, verdicts or {})
    atomic_write(index, lambda p: p.write_text(page, encoding="utf-8"))
    return [index, csv_path]


def check_index_target(root: Path) -> None:
    """Refuse (exit 4) before any work when ``root`` holds an index or comparison robustcnn did not write."""
    for path in (root / "index.html", root / "comparison.csv"):
        if path.exists() and not _ours(path):
            raise InvalidInputError(f"{path} exists and was not written by robustcnn; move it or choose another --out")


def render_index(
    root: Path,
    reports: Sequence[Any],
    headlines: pd.DataFrame,
    table: pd.DataFrame,
    verdicts: dict[str, Sequence[Any]],
) -> str:
    """The index page as one self-contained HTML string."""
    rows = []
    for label, report in zip(labels_for(reports), reports, strict=True):
        link = os.path.relpath(Path(report.path) / "report.html", root) if report.path is not None else ""
        results = verdicts.get(report.model)
        verdict = _verdict(results) if results is not None else ""
        rows.append(
            f'<tr><td style="text-align:left"><a href="{html.escape(link)}">{html.escape(label)}</a></td>'
            f'<td class="{verdict}">{verdict}</td><td>{len(report.table)}</td></tr>'
        )
    return (
        "<!DOCTYPE html>\n" + MARKER + '\n<html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>robustcnn: {len(reports)} models</title><style>{STYLE}</style></head><body>\n"
        f"<h1>robustcnn audit of {len(reports)} models</h1>\n"
        "<table><thead><tr><th>model</th><th>gates</th><th>rows</th></tr></thead><tbody>\n"
        + "\n".join(rows)
        + "</tbody></table>\n<h2>Comparison</h2>\n<p>Each check's headline per model; "
        "<em>Δ</em> columns are the change against the first model.</p>\n"
        + _table_html(headlines)
        + '\n<h2>All rows</h2>\n<p>Also in <a href="comparison.csv">comparison.csv</a>.</p>\n'
        + _table_html(table)
        + "\n</body></html>\n"
    )


def _ours(path: Path) -> bool:
    """An index or comparison robustcnn wrote: the page carries its marker, the CSV its key columns."""
    try:
        head = path.read_text(encoding="utf-8", errors="replace")[:400]
    except OSError:
        return False
    return MARKER in head if path.suffix == ".html" else head.startswith("check,metric")


def _verdict(results: Sequence[Any]) -> str:
    statuses = {r.status for r in results}
    return next((s for s in ("fail", "warn", "pass") if s in statuses), "pass")


def _table_html(table: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(format_value(v))}</td>" for v in row) + "</tr>"
        for row in table.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"

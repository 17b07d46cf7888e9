"""Several reports side by side: the view a model review reads in pandas or the terminal.

``compare_headlines`` puts each check's headline number of every model in one row;
``compare_tables`` aligns every row of the long tables on (check, metric, parameters).
Both add ``Δ <model>`` columns: the change of each model against the first one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..checks import load_registry
from ..errors import InvalidInputError, UsageError
from ..results.schema import CORE_COLUMNS
from .markdown import md_table
from .scorecard import format_value, report_label, scorecard

KEY_COLUMNS = ["check", "metric"]


def labels_for(reports: Sequence[Any]) -> list[str]:
    """One distinct column label per report: the model name, with the folder added when two clash."""
    names = [report_label(r) for r in reports]
    labels = []
    for name, report in zip(names, reports, strict=False):
        label = name if names.count(name) == 1 else f"{name} ({Path(str(getattr(report, 'path', '') or '')).name})"
        while label in labels:
            label += "'"
        labels.append(label)
    return labels


def _with_deltas(wide: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    for label in labels[1:]:
        wide[f"Δ {label}"] = wide[label] - wide[labels[0]]
    return wide


def compare_headlines(reports: Sequence[Any]) -> pd.DataFrame:
    """One row per check (family, check, headline label), one value column per model, then deltas."""
    _need(reports)
    labels = labels_for(reports)
    frames, info = [], {}
    for label, report in zip(labels, reports, strict=False):
        card = scorecard(report)
        for row in card.itertuples(index=False):
            family, headline = info.get(row.check, ("", ""))
            info[row.check] = (family or row.family, headline or row.headline)
        frames.append(card.set_index("check")["value"].rename(label))
    wide = pd.concat(frames, axis=1, sort=False)
    registry = load_registry()
    order = sorted(wide.index, key=lambda k: (getattr(registry.get(k), "order", 1000), k))
    wide = wide.loc[order]
    wide.insert(0, "headline", [info[c][1] for c in order])
    wide.insert(0, "family", [info[c][0] for c in order])
    wide = wide.rename_axis("check").reset_index()[["family", "check", "headline", *labels]]
    return _with_deltas(wide, labels)


def _keyed(table: pd.DataFrame, params: list[str]) -> pd.Series:
    view = table.copy()
    for col in params:
        view[col] = view[col].map(_key_text) if col in view.columns else ""
    series = view.set_index(KEY_COLUMNS + params)["value"].astype(float)
    return series[~series.index.duplicated()]


def _key_text(v: Any) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return ""
    return format(float(v), ".6g") if isinstance(v, float) else str(v)


def compare_tables(reports: Sequence[Any], checks: Sequence[str] | None = None) -> pd.DataFrame:
    """Every (check, metric, parameters) row of the reports with one value column per model, then
    deltas against the first; parameters a row does not have are empty strings."""
    _need(reports)
    labels = labels_for(reports)
    tables = [r.table if checks is None else r.table[r.table["check"].isin(checks)] for r in reports]
    params: list[str] = []
    for table in tables:
        params += [c for c in table.columns if c not in CORE_COLUMNS and c not in params and table[c].notna().any()]
    series = [_keyed(t, params).rename(label) for t, label in zip(tables, labels, strict=False)]
    wide = pd.concat(series, axis=1, sort=False).reset_index()
    used = [p for p in params if (wide[p] != "").any()]
    wide = wide.drop(columns=[p for p in params if p not in used])
    return _with_deltas(wide, labels)


def write_comparison(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a comparison as .csv, .md, .html or .parquet (by the file's suffix)."""
    path = Path(path)
    suffix = path.suffix.lower()
    writers = {
        ".csv": lambda: table.to_csv(path, index=False, float_format="%.10g"),
        ".parquet": lambda: table.to_parquet(path, index=False),
        ".md": lambda: path.write_text(md_table(table.map(format_value)), encoding="utf-8"),
        ".html": lambda: path.write_text(_html(table), encoding="utf-8"),
    }
    if suffix not in writers:
        raise UsageError(f"cannot write a comparison to '{path.name}': use a .csv, .md, .html or .parquet file")
    path.parent.mkdir(parents=True, exist_ok=True)
    writers[suffix]()
    return path


def _html(table: pd.DataFrame) -> str:
    body = (
        table.style.hide(axis="index").format(format_value, escape="html").format_index(escape="html", axis=1).to_html()
    )
    return f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>robustcnn comparison</title></head><body>\n{body}</body></html>\n'


def _need(reports: Sequence[Any]) -> None:
    if not reports:
        raise InvalidInputError("nothing to compare: give at least one report directory")

"""The headline scorecard: one line per check that ran, with the number that matters.

Each check class states its own headline (``Check.headline(table)``); the scorecard asks every
check found in a report for it, in the registry's order, and adds the verdict of the gates
on that check when a policy ran.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..checks import Check, load_registry
from ..errors import InvalidInputError
from ..results.schema import CORE_COLUMNS
from .verdicts import default_verdict

BREAKDOWN_COLUMNS = ("class", "pred")  # a metric broken down by these is detail, not headline
LONG_METRIC_ROWS = 60  # a metric with more rows than this is detail too
SCORECARD_COLUMNS = [
    "family",
    "check",
    "title",
    "headline",
    "value",
    "ci_low",
    "ci_high",
    "kind",
    "vs_clean",
    "verdict",
    "status",
    "gate",
    "note",
]
GATE_ORDER = {"pass": 0, "warn": 1, "fail": 2}


def check_names(report: Any) -> list[str]:
    """The checks of a report (meta first, then any only in the table), in registry order."""
    registry = load_registry()
    names = list((report.meta or {}).get("checks", {}) or {})
    if "check" in report.table.columns:
        names += [c for c in report.table["check"].dropna().unique() if c not in names]
    return sorted(names, key=lambda n: (getattr(registry.get(n), "order", 1000), n))


def check_instance(name: str, meta: dict[str, Any] | None) -> Check | None:
    """The registered check ``name`` configured as it ran (falls back to defaults), or None if unknown."""
    cls = load_registry().get(name)
    if cls is None:
        return None
    config = (((meta or {}).get("checks") or {}).get(name) or {}).get("config")
    try:
        return cls.from_options(config)
    except InvalidInputError:
        return cls()


def drop_empty(table: pd.DataFrame) -> pd.DataFrame:
    """The table without parameter columns that are empty in it (core columns always kept)."""
    return table.drop(columns=[c for c in table.columns if c not in CORE_COLUMNS and table[c].isna().all()])


def check_table(report: Any, name: str) -> pd.DataFrame:
    """The rows of one check, without parameter columns that are empty for it."""
    table = report.table
    if "check" not in table.columns:
        return table.iloc[0:0]
    return drop_empty(table[table["check"] == name]).reset_index(drop=True)


def breakdown_rows(table: pd.DataFrame) -> pd.Series:
    """A mask of a check's detail rows: the per-class (or per-predicted-class) rows of a metric
    that has several, and every row of a metric with very many rows. Reports show the other
    rows first and these folded or left out."""
    per_class = pd.Series(False, index=table.index)
    for col in BREAKDOWN_COLUMNS:
        if col in table.columns:
            per_class |= table[col].notna()
    counts = per_class.groupby(table["metric"]).transform("sum")
    sizes = table.groupby("metric")["metric"].transform("size")
    return (per_class & (counts > 1)) | (sizes > LONG_METRIC_ROWS)


def scorecard(report: Any, gate_results: Sequence[Any] | None = None) -> pd.DataFrame:
    """One line per check: family, check, title, headline label and value, run status, gate verdict.

    ``gate`` is the worst verdict (pass < warn < fail) of the gates on that check, empty when
    no gate looked at it; ``verdict`` is that gate verdict when gates ran, else the advisory
    default policy's verdict on the headline (``audits/default-policy.toml``). ``note`` explains a missing headline (an error in the check or in its
    ``headline``), so that a missing number is never silent. ``kind`` is the headline's ``rate``
    (a share in [0, 1]) or ``value``; ``vs_clean`` is an accuracy headline's difference to the
    clean accuracy of the same report (e.g. worst-of-grid accuracy minus clean accuracy), NaN
    where the comparison means nothing or clean accuracy is missing.
    """
    checks_meta = (report.meta or {}).get("checks") or {}
    lines, comparable = [], []
    for name in check_names(report):
        info = checks_meta.get(name) or {}
        instance = check_instance(name, report.meta)
        table = check_table(report, name)
        label, val, note, head = "", math.nan, "", None
        if instance is None:
            note = "check not in the registry"
        elif info.get("status") == "not run":
            note = "not run: --max-minutes was spent (--resume finishes it)"
        elif table.empty:
            note = "no rows"
        else:
            try:
                head = instance.headline(table)
            except Exception as exc:  # a report must still render when one headline is buggy
                head, note = None, f"headline failed: {type(exc).__name__}: {exc}"
            if head is not None:
                label, val = head.label, head.value
            elif not note:
                note = "the check gives no headline"
        lines.append(
            {
                "family": getattr(instance, "family", "") or "",
                "check": name,
                "title": getattr(instance, "title", "") or name,
                "headline": label,
                "value": val,
                "ci_low": getattr(head, "ci_low", math.nan),
                "ci_high": getattr(head, "ci_high", math.nan),
                "kind": getattr(head, "kind", ""),
                "vs_clean": math.nan,
                "verdict": _gate_verdict(gate_results, name)
                if gate_results
                else (default_verdict(head) if head else ""),
                "status": info.get("status", "ok" if not table.empty else ""),
                "gate": _gate_verdict(gate_results, name),
                "note": note or "; ".join(info.get("warnings") or [])[:300],
            }
        )
        comparable.append(name != "clean" and _is_accuracy(head))
    clean = next((line["value"] for line in lines if line["check"] == "clean" and line["kind"] == "rate"), math.nan)
    for line, compare in zip(lines, comparable, strict=True):
        if compare:
            line["vs_clean"] = line["value"] - clean
    return pd.DataFrame(lines, columns=SCORECARD_COLUMNS)


def _is_accuracy(head: Any) -> bool:
    """An accuracy under some stress (robust, corrupted, worst-of-grid), comparable to clean accuracy."""
    metric = str((getattr(head, "where", None) or {}).get("metric", ""))
    return head is not None and head.kind == "rate" and head.better == "higher" and metric.endswith("accuracy")


def _gate_verdict(gate_results: Sequence[Any] | None, check: str) -> str:
    statuses = [r.status for r in gate_results or [] if r.gate.check == check]
    return max(statuses, key=GATE_ORDER.__getitem__) if statuses else ""


def format_value(v: Any) -> str:
    """A number as people read it in a table: 4 significant digits, empty for missing."""
    if v is None or v is pd.NA or v is pd.NaT:
        return ""
    if isinstance(v, (bool, numbers.Integral)) or not isinstance(v, numbers.Real):
        return str(v)
    return "" if math.isnan(v) else f"{float(v):.4g}"


def percent(v: float) -> str:
    """A share in [0, 1] as a percentage number without the sign: whole percents between 1% and
    99%, one significant digit of the distance to 0% or 100% beyond, so that a share that is not
    exactly 0 or 1 never reads as 0 or 100 (``0.06``, ``99.95``)."""
    p = 100 * float(v)
    if not 0 < p < 100 or 1 <= p <= 99:
        return f"{p:.0f}"
    if p < 1:
        return np.format_float_positional(p, precision=1, unique=False, fractional=False, trim="-")
    gap = np.format_float_positional(100 - p, precision=1, unique=False, fractional=False, trim="-")
    return f"{p:.{len(gap.partition('.')[2])}f}"


def headline_text(value: float, ci_low: float = math.nan, ci_high: float = math.nan, kind: str = "rate") -> str:
    """A headline as people read it: a rate as a percentage, e.g. ``72% (68–76)`` with its 95%
    interval, any other value to 3 significant digits, e.g. ``0.0997 (0.0884–0.107)``."""
    if value is None or pd.isna(value):
        return ""
    show = percent if kind == "rate" else (lambda v: f"{float(v):.3g}")
    text = show(value) + ("%" if kind == "rate" else "")
    if not (pd.isna(ci_low) or pd.isna(ci_high)):
        text += f" ({show(ci_low)}–{show(ci_high)})"
    return text


def delta_text(delta: float) -> str:
    """A difference of two rates in percentage points, e.g. ``−28 pts``; empty for NaN."""
    if delta is None or pd.isna(delta):
        return ""
    points = 100 * float(delta)
    text = f"{abs(points):.1f}" if abs(points) < 10 else f"{abs(points):.0f}"
    return ("−" if points < 0 and float(text) else "+" if points > 0 and float(text) else "±") + f"{text} pts"


def display_card(card: pd.DataFrame) -> pd.DataFrame:
    """The scorecard for reading: ``value`` as ``headline_text``, ``vs clean`` as ``delta_text``,
    without the title and the numeric columns they replace, and without columns empty throughout."""
    view = card.copy()
    view["value"] = [
        headline_text(v, lo, hi, k)
        for v, lo, hi, k in zip(view["value"], view["ci_low"], view["ci_high"], view["kind"], strict=True)
    ]
    view.insert(view.columns.get_loc("value") + 1, "vs clean", view["vs_clean"].map(delta_text))
    view = view.drop(columns=["title", "ci_low", "ci_high", "kind", "vs_clean"])
    return view.loc[:, [c for c in view.columns if c in ("check", "value") or (view[c].astype(str) != "").any()]]


def scorecard_text(card: pd.DataFrame) -> str:
    """The scorecard as a plain-text table for the terminal."""
    if card.empty:
        return "(no checks in this report)"
    return display_card(card).to_string(index=False)


def partial_note(report: Any) -> str:
    """For a report stopped by ``--max-minutes``: what it lacks and how to finish it; else empty."""
    meta = report.meta or {}
    if meta.get("status") != "partial":
        return ""
    stopped = meta.get("stopped") or {}
    missing = ", ".join(stopped.get("checks_not_run") or []) or "none"
    return (
        f"Partial report: the run stopped when --max-minutes {stopped.get('max_minutes', 0):g} was spent; "
        f"checks not run: {missing}. Rerun the same audit with --resume to finish it."
    )


def fact(v: Any) -> str:
    """A meta entry (a string, or a dict such as ``{"name": ..., "sha256": ...}``) as one short string."""
    if isinstance(v, dict):
        return str(v.get("name") or v.get("ref") or v.get("path") or next(iter(v.values()), ""))
    return str(v)


def report_label(report: Any) -> str:
    """The model's name: from meta, else the table's ``model`` column, else the report folder's name."""
    model = (report.meta or {}).get("model")
    if model:
        return fact(model)
    table = report.table
    if "model" in table.columns and table["model"].notna().any():
        return str(table["model"].dropna().iloc[0])
    return Path(str(getattr(report, "path", "") or "report")).name

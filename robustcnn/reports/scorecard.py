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
    ``headline``), so that a missing number is never silent.
    """
    checks_meta = (report.meta or {}).get("checks") or {}
    lines = []
    for name in check_names(report):
        info = checks_meta.get(name) or {}
        instance = check_instance(name, report.meta)
        table = check_table(report, name)
        label, val, note, head = "", math.nan, "", None
        if instance is None:
            note = "check not in the registry"
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
                "verdict": _gate_verdict(gate_results, name)
                if gate_results
                else (default_verdict(head) if head else ""),
                "status": info.get("status", "ok" if not table.empty else ""),
                "gate": _gate_verdict(gate_results, name),
                "note": note or "; ".join(info.get("warnings") or [])[:300],
            }
        )
    return pd.DataFrame(lines, columns=SCORECARD_COLUMNS)


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


def scorecard_text(card: pd.DataFrame) -> str:
    """The scorecard as a plain-text table for the terminal."""
    if card.empty:
        return "(no checks in this report)"
    view = card.copy()
    view["value"] = view["value"].map(format_value)
    view = view.drop(columns=[c for c in ("title", "ci_low", "ci_high") if c in view.columns])
    view = view.loc[:, [c for c in view.columns if c in ("check", "value") or (view[c].astype(str) != "").any()]]
    return view.to_string(index=False)


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

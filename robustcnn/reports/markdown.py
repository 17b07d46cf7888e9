"""``summary.md``: the scorecard, gate verdicts and key tables in GitHub-flavoured markdown.

Meant for pull-request comments and the job summary of GitHub Actions
(``append_step_summary`` writes to ``$GITHUB_STEP_SUMMARY`` when it is set).
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .scorecard import (
    breakdown_rows,
    check_names,
    check_table,
    display_card,
    drop_empty,
    fact,
    format_value,
    partial_note,
    report_label,
    scorecard,
)

KEY_ROWS = 12  # rows of a check's table shown in the summary; the rest is in results.csv
VERDICT = {"pass": "✅ pass", "warn": "⚠️ warn", "fail": "❌ fail"}


def md_cell(v: Any) -> str:
    """One table cell: formatted, with markdown and HTML special characters neutralised."""
    text = format_value(v) if not isinstance(v, str) else v
    text = html.escape(text, quote=False).replace("|", "\\|").replace("\n", " ").replace("\r", " ")
    return text.replace("`", "\\`").replace("*", "\\*").replace("[", "\\[").replace("]", "\\]")


def md_table(df: pd.DataFrame) -> str:
    """A DataFrame as a GitHub markdown table (index dropped)."""
    if df.empty:
        return "_(no rows)_\n"
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(md_cell(c) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(md_cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def key_table(table: pd.DataFrame, limit: int = KEY_ROWS) -> tuple[pd.DataFrame, int]:
    """The headline rows of a check's table: detail rows (``breakdown_rows``) dropped, capped at
    ``limit``; returns the rows and how many rows of the check were left out."""
    if table.empty:
        return table, 0
    key = table[~breakdown_rows(table)]
    if key.empty:
        key = table
    key = key.head(limit)
    view = drop_empty(key).drop(columns=[c for c in ("model", "check") if c in key.columns])
    return view, len(table) - len(key)


def gates_markdown(gate_results: Sequence[Any]) -> str:
    """The gate verdicts as a markdown table, failing gates first."""
    order = {"fail": 0, "warn": 1, "pass": 2}
    rows = sorted(gate_results, key=lambda r: order.get(r.status, 3))
    df = pd.DataFrame(
        [
            {
                "verdict": VERDICT.get(r.status, r.status),
                "gate": r.gate.name,
                "measured": format_value(r.value),
                "bound": r.bound,
                "message": r.message,
            }
            for r in rows
        ],
        columns=["verdict", "gate", "measured", "bound", "message"],
    )
    failed = sum(r.status == "fail" for r in gate_results)
    warned = sum(r.status == "warn" for r in gate_results)
    head = f"**Gates:** {len(gate_results)} evaluated, {failed} failed, {warned} warned.\n\n"
    return head + md_table(df)


def render_summary(report: Any, gate_results: Sequence[Any] | None = None) -> str:
    """The whole ``summary.md``: header, gate verdicts (if any), scorecard, one key table per check."""
    meta = report.meta or {}
    parts = [f"# Robustness audit: {md_cell(report_label(report))}\n"]
    facts = {k: fact(meta.get(k)) for k in ("data", "seed", "device") if meta.get(k) is not None}
    if facts:
        parts.append(" · ".join(f"{k}: {md_cell(v)}" for k, v in facts.items()) + "\n")
    if partial_note(report):
        parts.append(f"> **{md_cell(partial_note(report))}**\n")
    if gate_results:
        parts.append("## Gates\n\n" + gates_markdown(gate_results))
    card = scorecard(report, gate_results)
    view = display_card(card.assign(verdict=card["verdict"].map(lambda v: VERDICT.get(v, v))))
    parts.append("## Scorecard\n\n" + md_table(view))
    for name in check_names(report):
        table, left_out = key_table(check_table(report, name))
        if table.empty:
            continue
        section = f"### {md_cell(name)}\n\n" + md_table(table)
        if left_out:
            section += f"\n_{left_out} more rows in results.csv._\n"
        parts.append(section)
    return "\n".join(parts)


def append_step_summary(text: str, env: Mapping[str, str] | None = None) -> Path | None:
    """Append ``text`` to the file named by ``$GITHUB_STEP_SUMMARY``; returns it, or None if unset."""
    target = (env if env is not None else os.environ).get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    path = Path(target)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(text if text.endswith("\n") else text + "\n")
    return path

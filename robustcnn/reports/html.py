"""``report.html``: one self-contained page per audit (figures inline, no network access).

Layout: header facts, gate verdicts (when a policy ran), the headline scorecard, then one
section per check with what it does (the check class's ``title``, ``description`` and
``reference``), its table (a pandas Styler, sortable by clicking a header) and its figures.
Every string that comes from data is escaped (Jinja2 autoescaping for the page, the Styler's
``escape="html"`` for tables); a Content-Security-Policy forbids any network request and any
script but the page's own table sorter.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from markupsafe import Markup
from pandas.io.formats.style import Styler

from .scorecard import (
    breakdown_rows,
    check_instance,
    check_names,
    check_table,
    delta_text,
    drop_empty,
    fact,
    format_value,
    headline_text,
    partial_note,
    report_label,
    scorecard,
)

MAX_TABLE_ROWS = 1000  # rows of one check rendered in the page; results.csv has all
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CORE_HIDDEN = ("model", "check")

SORT_SCRIPT = """
document.querySelectorAll("table.rc-table thead th").forEach(function (th) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0];
    var idx = Array.prototype.indexOf.call(th.parentNode.children, th);
    var dir = th.getAttribute("data-dir") === "asc" ? "desc" : "asc";
    th.parentNode.querySelectorAll("th").forEach(function (o) { o.removeAttribute("data-dir"); });
    th.setAttribute("data-dir", dir);
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[idx].textContent.trim(), y = b.cells[idx].textContent.trim();
      var nx = Number(x), ny = Number(y);
      var c = (x !== "" && y !== "" && !isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return dir === "asc" ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def anchor(name: str) -> str:
    """An id for a check's section, safe in HTML and URLs."""
    return "check-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "x")


def styled_table(table: pd.DataFrame, uuid: str = "t", limit: int | None = None) -> str:
    """A check's rows as an HTML table via the pandas Styler: core columns hidden, numbers formatted
    and right-aligned, the 95% interval in one column, every cell and header HTML-escaped. ``uuid``
    names the table's element id, so that the page is deterministic."""
    view = table.drop(columns=[c for c in CORE_HIDDEN if c in table.columns]).head(limit or MAX_TABLE_ROWS).copy()
    if {"ci_low", "ci_high"} <= set(view.columns):
        ci = [
            f"[{format_value(lo)}, {format_value(hi)}]" if format_value(lo) else ""
            for lo, hi in zip(view["ci_low"], view["ci_high"], strict=False)
        ]
        pos = view.columns.get_loc("ci_low")
        view = view.drop(columns=["ci_low", "ci_high"])
        if any(ci):
            view.insert(pos, "95% CI", ci)
    view = drop_empty(view).reset_index(drop=True)
    view.columns = [str(c) for c in view.columns]
    numeric = [
        j
        for j, c in enumerate(view.columns)
        if pd.api.types.is_numeric_dtype(view[c]) and not pd.api.types.is_bool_dtype(view[c])
    ]
    styles = [
        {"selector": f"td.col{j}", "props": "text-align: right; font-variant-numeric: tabular-nums;"} for j in numeric
    ]
    styler = (
        Styler(view, uuid=re.sub(r"[^A-Za-z0-9_-]+", "-", uuid), cell_ids=False)
        .hide(axis="index")
        .format(format_value, escape="html")
        .format_index(escape="html", axis=1)
        .set_table_attributes('class="rc-table"')
        .set_table_styles(styles)
    )
    return styler.to_html()


def _figure(name: str, path: Any) -> dict[str, str]:
    """A figure file read for inlining; a missing or non-PNG file is shown as a note, not an error."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return {"name": name, "data": "", "problem": f"figure not readable: {exc.strerror or exc}"}
    if not data.startswith(PNG_SIGNATURE):
        return {"name": name, "data": "", "problem": "figure is not a PNG file"}
    return {"name": name, "data": base64.b64encode(data).decode("ascii"), "problem": ""}


def _cost(info: dict[str, Any]) -> str:
    parts = []
    if info.get("seconds") is not None:
        parts.append(f"{float(info['seconds']):.1f} s")
    for key in ("forward", "backward"):
        if info.get(key) is not None:
            parts.append(f"{int(info[key]):,} {key} image evaluations")
    if info.get("version") is not None:
        parts.append(f"check version {info['version']}")
    return " · ".join(parts)


def _tables(table: pd.DataFrame, uuid: str) -> dict[str, Any]:
    """The headline rows as one table, and the detail rows of each metric (per class, or very
    many; see ``breakdown_rows``) as their own table, shown folded; ``truncated`` if one was cut."""
    if table.empty:
        return {"table": "", "folds": [], "truncated": False}
    detail = breakdown_rows(table)
    if detail.all():
        detail[:] = False
    main = table[~detail]
    parts = [(str(m), drop_empty(part)) for m, part in table[detail].groupby("metric", sort=False)]
    return {
        "table": Markup(styled_table(drop_empty(main), f"{uuid}-0")),
        "folds": [
            {"metric": m, "rows": len(part), "table": Markup(styled_table(part, f"{uuid}-{i + 1}"))}
            for i, (m, part) in enumerate(parts)
        ],
        "truncated": any(len(t) > MAX_TABLE_ROWS for t in [main] + [p for _, p in parts]),
    }


def _section(report: Any, name: str, figures: dict[str, Any]) -> dict[str, Any]:
    meta = report.meta or {}
    info = ((meta.get("checks") or {}).get(name)) or {}
    check = check_instance(name, meta)
    table = check_table(report, name)
    return {
        "name": name,
        "anchor": anchor(name),
        "title": getattr(check, "title", "") or name,
        "family": getattr(check, "family", "") or "",
        "description": getattr(check, "description", "") or "",
        "reference": getattr(check, "reference", "") or "",
        "cost": _cost(info),
        "warnings": [str(w) for w in info.get("warnings") or []],
        "rows": len(table),
        **_tables(table, anchor(name)),
        "figures": [_figure(str(k), v) for k, v in sorted((figures or {}).items())],
        "config": json.dumps(info["config"], indent=2, default=str) if info.get("config") else "",
    }


def _status_class(status: str) -> str:
    if status in ("ok", "complete"):
        return "other"  # a check that ran is not a good result: colour comes from the verdict
    return status if status in ("pass", "warn", "fail", "error", "skipped") else "other"


def _facts(report: Any) -> list[tuple[str, str]]:
    """The header line: model, data, sample size, seed, device, versions, time."""
    meta = report.meta or {}
    model, data = meta.get("model"), meta.get("data")
    facts = []
    if isinstance(model, dict) and model.get("spec"):
        facts.append(("model", str(model["spec"])))
    if data is not None:
        facts.append(
            ("data", fact(data) + (f" (n={data['eval_n']})" if isinstance(data, dict) and data.get("eval_n") else ""))
        )
    facts += [(k, str(meta[k])) for k in ("seed", "device") if meta.get(k) is not None]
    versions = meta.get("versions") if isinstance(meta.get("versions"), dict) else {}
    versions = {
        **versions,
        **{k.removesuffix("_version"): v for k, v in meta.items() if k.endswith("_version") and k != "schema_version"},
    }
    facts += [(k, str(v)) for k, v in versions.items()]
    if meta.get("started"):
        facts.append(("started", str(meta["started"])))
    facts += _time_facts(meta)
    return facts


def _time_facts(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """The compute time of all checks (``work_seconds``, which counts tasks reused by ``--resume``
    at their original cost) and the wall time of the run that wrote the report (``seconds``)."""
    wall, work = meta.get("seconds"), meta.get("work_seconds")
    if not isinstance(work, (int, float)):
        return [("time", f"{wall:.1f} s")] if isinstance(wall, (int, float)) else []
    facts = [("work", f"{work:.1f} s")]
    if isinstance(wall, (int, float)):
        facts.append(("this run", f"{wall:.1f} s"))
    return facts


def render_html(report: Any, gate_results: Sequence[Any] | None = None) -> str:
    """The report page as one HTML string (figures as base64 PNG, no external resources)."""
    meta = report.meta or {}
    all_figures = dict(getattr(report, "figures", None) or {})
    names = check_names(report)
    names += [n for n in all_figures if n not in names]
    card = scorecard(report, gate_results)
    gates = [
        {
            "status": r.status,
            "name": r.gate.name,
            "check": r.gate.check,
            "anchor": anchor(r.gate.check),
            "value": format_value(r.value),
            "bound": r.bound,
            "message": r.message,
        }
        for r in sorted(gate_results or [], key=lambda r: {"fail": 0, "warn": 1}.get(r.status, 2))
    ]
    run_info = {k: v for k, v in meta.items() if k != "checks"}
    notes = meta.get("notes") or []
    notes = ([partial_note(report)] if partial_note(report) else []) + (notes if isinstance(notes, list) else [notes])
    return _ENV.get_template("report.html.j2").render(
        label=report_label(report),
        facts=_facts(report),
        notes=[str(n) for n in (notes if isinstance(notes, list) else [notes])],
        gates=gates,
        gate_counts={s: sum(g["status"] == s for g in gates) for s in ("pass", "warn", "fail")},
        scorecard=[
            {
                **row,
                "anchor": anchor(row["check"]),
                "value": headline_text(row["value"], row["ci_low"], row["ci_high"], row["kind"]),
                "vs_clean": delta_text(row["vs_clean"]),
                "status_class": _status_class(str(row["status"])),
                "verdict_class": row["verdict"] or "other",
            }
            for row in card.to_dict("records")
        ],
        has_notes=bool((card["note"] != "").any()),
        has_deltas=bool(card["vs_clean"].notna().any()),
        sections=[_section(report, n, all_figures.get(n) or {}) for n in names],
        max_rows=MAX_TABLE_ROWS,
        plan=json.dumps(run_info, indent=2, default=str) if run_info else "",
        script=Markup(SORT_SCRIPT),
        script_hash="sha256-" + base64.b64encode(hashlib.sha256(SORT_SCRIPT.encode()).digest()).decode(),
    )

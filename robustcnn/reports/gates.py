"""CI gates: bounds on report rows, read from ``[[gate]]`` tables in TOML, with JUnit output.

A gate names a check, a metric and parameter filters, and bounds the matching rows either
absolutely (``min`` / ``max``) or against a baseline report (``max_drop`` / ``max_rise``).
Selection rules (see docs/gates.md):

* a filter keeps rows whose parameter equals the value (numbers compared with a relative
  tolerance of 1e-9, a list means any of its values, ``"*"`` means any non-empty value);
* a parameter the gate does not name reads the overall row where the matching rows hold
  both an overall (empty) and broken-down values, and all values otherwise;
* every selected row must hold the bound, so several rows are bounded by their worst;
* a gate that selects no row, a missing value (NaN) or a check that failed is never a pass.
"""

from __future__ import annotations

import math
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidInputError, NothingEvaluatedError, UsageError
from ..results.schema import CORE_COLUMNS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BOUND_KEYS = ("min", "max", "max_drop", "max_rise")
RESERVED_KEYS = {"check", "metric", "severity", "name", "where", *BOUND_KEYS}
SEVERITIES = ("fail", "warn")
OK_STATUSES = ("complete", "ok")
ANY = "*"
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

Scalar = str | int | float | bool


@dataclass(frozen=True)
class Gate:
    """One bound on the rows of a report; ``where`` maps parameter columns to wanted values."""

    check: str
    metric: str
    where: dict[str, Scalar | list[Scalar]] = field(default_factory=dict)
    min: float | None = None
    max: float | None = None
    max_drop: float | None = None
    max_rise: float | None = None
    severity: str = "fail"
    name: str = ""

    @property
    def relative(self) -> bool:
        """True when the gate bounds the change against a baseline report."""
        return self.max_drop is not None or self.max_rise is not None

    def bound_text(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f">= {self.min:g}")
        if self.max is not None:
            parts.append(f"<= {self.max:g}")
        if self.max_drop is not None:
            parts.append(f"drop <= {self.max_drop:g} vs baseline")
        if self.max_rise is not None:
            parts.append(f"rise <= {self.max_rise:g} vs baseline")
        return " and ".join(parts)

    def selector(self) -> str:
        """``check/metric[param=value, ...]``: what the gate looks at."""
        where = ", ".join(f"{k}={_show(v)}" for k, v in self.where.items())
        return f"{self.check}/{self.metric}" + (f"[{where}]" if where else "")


@dataclass(frozen=True)
class GateResult:
    """The verdict of one gate: ``status`` is pass, warn or fail; ``value`` the measured worst value."""

    gate: Gate
    status: str
    value: float
    bound: str
    message: str
    rows: int = 0
    baseline: float | None = None


# --- policy ----------------------------------------------------------------------------------


def load_policy(path: str | Path) -> list[Gate]:
    """The ``[[gate]]`` tables of a policy file or a plan file, validated."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"policy file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"policy {path} is not valid TOML: {exc}") from exc
    if "gate" not in raw:
        raise InvalidInputError(
            f'policy {path} has no [[gate]] tables; add e.g. [[gate]] check = "clean" metric = "accuracy" min = 0.9'
        )
    return parse_gates(raw["gate"], str(path))


def parse_gates(tables: Any, source: str = "policy") -> list[Gate]:
    """Gates from a list of ``[[gate]]`` tables (as a plan file holds them); names made unique."""
    if isinstance(tables, dict):
        raise InvalidInputError(f"{source}: write gates as [[gate]] (an array of tables), not [gate]")
    if not isinstance(tables, list) or not tables:
        raise InvalidInputError(f"{source}: the policy holds no gate; add at least one [[gate]] table")
    gates = [_parse_gate(t, f"{source}: gate {i + 1}") for i, t in enumerate(tables)]
    seen: dict[str, int] = {}
    unique = []
    for g in gates:
        seen[g.name] = seen.get(g.name, 0) + 1
        unique.append(g if seen[g.name] == 1 else _renamed(g, f"{g.name} #{seen[g.name]}"))
    return unique


def _renamed(gate: Gate, name: str) -> Gate:
    return Gate(
        gate.check, gate.metric, gate.where, gate.min, gate.max, gate.max_drop, gate.max_rise, gate.severity, name
    )


def _parse_gate(table: Any, where: str) -> Gate:
    from ..checks import load_registry

    if not isinstance(table, dict):
        raise InvalidInputError(f"{where}: must be a table with check, metric and a bound")
    for key in ("check", "metric"):
        if not isinstance(table.get(key), str) or not table[key]:
            raise InvalidInputError(f'{where}: needs {key} = "..." (a string)')
    registry = load_registry()
    if table["check"] not in registry:
        raise InvalidInputError(f"{where}: unknown check '{table['check']}'; checks: {', '.join(sorted(registry))}")
    label = f"{where} ({table['check']}/{table['metric']})"
    bounds: dict[str, float] = {}
    for key in BOUND_KEYS:
        if key in table:
            v = table[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise InvalidInputError(f"{label}: {key} must be a finite number, got {v!r}")
            bounds[key] = float(v)
    if not bounds:
        raise InvalidInputError(f"{label}: give a bound: min, max, max_drop or max_rise")
    absolute = {"min", "max"} & set(bounds)
    if absolute and set(bounds) - absolute:
        raise InvalidInputError(
            f"{label}: a gate bounds either the value (min/max) or the change (max_drop/max_rise); split it into two gates"
        )
    if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
        raise InvalidInputError(f"{label}: min {bounds['min']:g} is above max {bounds['max']:g}")
    for key in ("max_drop", "max_rise"):
        if bounds.get(key, 0.0) < 0:
            raise InvalidInputError(f"{label}: {key} must be >= 0, got {bounds[key]:g}")
    severity = table.get("severity", "fail")
    if severity not in SEVERITIES:
        raise InvalidInputError(f'{label}: severity must be "fail" or "warn", got {severity!r}')
    filters = _filters(table, label)
    name = table.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise InvalidInputError(f"{label}: name must be a non-empty string")
    gate = Gate(
        table["check"],
        table["metric"],
        filters,
        bounds.get("min"),
        bounds.get("max"),
        bounds.get("max_drop"),
        bounds.get("max_rise"),
        severity,
        "",
    )
    return _renamed(gate, name.strip() if name else f"{gate.selector()} {gate.bound_text()}")


def _filters(table: dict[str, Any], label: str) -> dict[str, Scalar | list[Scalar]]:
    explicit = table.get("where", {})
    if not isinstance(explicit, dict):
        raise InvalidInputError(f'{label}: where must be a table, e.g. where = {{ norm = "linf", eps = 0.1 }}')
    inline = {k: v for k, v in table.items() if k not in RESERVED_KEYS}
    clash = sorted(set(inline) & set(explicit))
    if clash:
        raise InvalidInputError(f"{label}: filter {', '.join(clash)} is given twice (inline and in where)")
    filters = {**inline, **explicit}
    for key, v in filters.items():
        if key in CORE_COLUMNS:
            raise InvalidInputError(f"{label}: '{key}' is not a parameter to filter on")
        values = v if isinstance(v, list) else [v]
        if not values or not all(isinstance(x, (str, int, float, bool)) for x in values):
            raise InvalidInputError(f"{label}: filter {key} must be a string, a number or a list of them, got {v!r}")
    return filters


# --- evaluation ------------------------------------------------------------------------------


def _show(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _text(v: Any) -> str:
    """A filter value as the string a text column would hold (3 -> "3", 0.5 -> "0.5")."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _matches(column: pd.Series, want: Scalar | list[Scalar], label: str, key: str) -> pd.Series:
    if want == ANY:
        return column.notna()
    wanted = want if isinstance(want, list) else [want]
    mask = pd.Series(False, index=column.index)
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        values = column.to_numpy(dtype=float, na_value=np.nan)
        for w in wanted:
            if isinstance(w, bool) or not isinstance(w, (int, float)):
                raise InvalidInputError(f"{label}: {key} holds numbers; filter it with a number, not {w!r}")
            mask |= np.isclose(values, float(w), rtol=1e-9, atol=1e-12)
        return mask
    text = column.map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else _text(v))
    for w in wanted:
        mask |= text == _text(w)
    return mask


def select_rows(table: pd.DataFrame, gate: Gate) -> pd.DataFrame:
    """The rows a gate bounds (see the module docstring); empty when none match."""
    label = f"gate '{gate.name}'"
    part = table[(table["check"] == gate.check) & (table["metric"] == gate.metric)]
    if part.empty:
        return part
    part = part.drop(columns=[c for c in part.columns if c not in CORE_COLUMNS and part[c].isna().all()])
    for key, want in gate.where.items():
        if key not in part.columns:
            params = [c for c in part.columns if c not in CORE_COLUMNS]
            raise InvalidInputError(
                f"{label}: {gate.check}/{gate.metric} has no parameter '{key}' (its parameters: {', '.join(params) or 'none'})"
            )
        part = part[_matches(part[key], want, label, key)]
    for col in [c for c in part.columns if c not in CORE_COLUMNS and c not in gate.where]:
        present = part[col].notna()
        if present.any() and not present.all():
            part = part[~present]
    return part


def _no_rows_error(table: pd.DataFrame, gate: Gate) -> InvalidInputError:
    check_rows = table[table["check"] == gate.check]
    if check_rows.empty:
        checks = sorted(table["check"].dropna().unique())
        return InvalidInputError(
            f"gate '{gate.name}': check '{gate.check}' is not in the report (it has {', '.join(checks) or 'no checks'}); run it or drop the gate"
        )
    metric_rows = check_rows[check_rows["metric"] == gate.metric]
    if metric_rows.empty:
        metrics = sorted(check_rows["metric"].dropna().unique())
        return InvalidInputError(
            f"gate '{gate.name}': check '{gate.check}' has no metric '{gate.metric}' (its metrics: {', '.join(metrics)})"
        )
    options = []
    for key in gate.where:
        values = sorted({_text(v) for v in metric_rows[key].dropna()}) if key in metric_rows.columns else []
        options.append(f"{key} in {{{', '.join(values[:12])}{', ...' if len(values) > 12 else ''}}}")
    return InvalidInputError(
        f"gate '{gate.name}' matches no row of {gate.check}/{gate.metric}; available: {'; '.join(options)}"
    )


def _row_label(row: pd.Series, gate: Gate) -> str:
    params = [
        f"{k}={_show(v)}" for k, v in row.items() if k not in CORE_COLUMNS and k not in gate.where and not _missing(v)
    ]
    return ", ".join(params)


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _verdict(gate: Gate, broken: bool) -> str:
    return ("fail" if gate.severity == "fail" else "warn") if broken else "pass"


def _check_failed(gate: Gate, meta: dict[str, Any]) -> GateResult | None:
    info = ((meta or {}).get("checks") or {}).get(gate.check)
    status = info.get("status") if isinstance(info, dict) else None
    if status is None or status in OK_STATUSES:
        return None
    message = f"{gate.selector()}: check '{gate.check}' did not complete (status {status}); the gate cannot pass"
    return GateResult(gate, _verdict(gate, True), math.nan, gate.bound_text(), message)


def _evaluate_absolute(gate: Gate, rows: pd.DataFrame) -> GateResult:
    values = rows["value"].astype(float).to_numpy()
    low = gate.min if gate.min is not None else -math.inf
    high = gate.max if gate.max is not None else math.inf
    excess = np.maximum(low - values, values - high)
    nan = np.isnan(values)
    worst = int(np.argmax(np.where(nan, np.inf, excess)))
    value = float(values[worst])
    broken = bool(nan.any() or excess[worst] > 0)
    where = _row_label(rows.iloc[worst], gate)
    of = f" (worst of {len(rows)} rows{': ' + where if where else ''})" if len(rows) > 1 else ""
    if nan.any():
        detail = f"{int(nan.sum())} of {len(rows)} matching rows have no value (NaN): not measured"
    else:
        detail = f"measured {value:.4g}{of}, bound {gate.bound_text()}"
    return GateResult(gate, _verdict(gate, broken), value, gate.bound_text(), f"{gate.selector()}: {detail}", len(rows))


def _evaluate_relative(gate: Gate, rows: pd.DataFrame, base_table: pd.DataFrame) -> GateResult:
    base_rows = select_rows(base_table, gate)
    if base_rows.empty:
        raise InvalidInputError(
            f"gate '{gate.name}' matches no row of the baseline report; is it an audit of the same checks?"
        )
    keys = sorted(c for c in set(rows.columns) | set(base_rows.columns) if c not in CORE_COLUMNS)

    def keyed(df: pd.DataFrame) -> pd.DataFrame:
        out = pd.DataFrame(
            {k: (df[k].map(lambda v: "" if _missing(v) else _text(v)) if k in df.columns else "") for k in keys},
            index=df.index,
        )
        out["value"] = df["value"].astype(float)
        return out

    current, base = keyed(rows), keyed(base_rows)
    merged = (
        current.merge(base, on=keys, how="left", suffixes=("", "_base"))
        if keys
        else current.assign(value_base=float(base["value"].iloc[0]))
    )
    if merged["value_base"].isna().all() and base["value"].notna().any():
        raise InvalidInputError(
            f"gate '{gate.name}': the baseline has rows for {gate.selector()} but none with the same parameters"
        )
    change = merged["value"] - merged["value_base"]
    excess = -change - gate.max_drop if gate.max_drop is not None else change - gate.max_rise
    excess = excess.to_numpy(dtype=float)
    nan = np.isnan(excess)
    worst = int(np.argmax(np.where(nan, np.inf, excess)))
    value, base_value = float(merged["value"].iloc[worst]), float(merged["value_base"].iloc[worst])
    broken = bool(nan.any() or excess[worst] > 0)
    where = ", ".join(
        f"{k}={merged[k].iloc[worst]}" for k in keys if k not in gate.where and merged[k].iloc[worst] != ""
    )
    of = f" (worst of {len(merged)} rows{': ' + where if where else ''})" if len(merged) > 1 else ""
    if nan.any():
        detail = f"{int(nan.sum())} of {len(merged)} rows have no value or no baseline value (NaN): not measured"
    else:
        detail = f"measured {value:.4g} vs baseline {base_value:.4g}, change {value - base_value:+.4g}{of}, bound {gate.bound_text()}"
    return GateResult(
        gate, _verdict(gate, broken), value, gate.bound_text(), f"{gate.selector()}: {detail}", len(merged), base_value
    )


def evaluate(
    gates: Sequence[Gate], report: Any, baseline: Any | None = None, warn_only: bool = False
) -> list[GateResult]:
    """Every gate's verdict on ``report`` (anything with ``.table`` and ``.meta``).

    Raises ``InvalidInputError`` (exit 4) for a gate that matches no row, ``UsageError`` (2)
    for a relative gate without a baseline, ``NothingEvaluatedError`` (5) when there is no gate
    or the report has no rows. ``warn_only`` turns every failure into a warning.
    """
    table = report.table
    if not gates:
        raise NothingEvaluatedError("no gates to evaluate")
    if table is None or table.empty:
        raise NothingEvaluatedError("the report has no rows; nothing to gate")
    meta = getattr(report, "meta", None) or {}
    results = []
    for gate in gates:
        failed = _check_failed(gate, meta)
        if failed is not None:
            results.append(failed)
            continue
        rows = select_rows(table, gate)
        if rows.empty:
            raise _no_rows_error(table, gate)
        if gate.relative:
            if baseline is None:
                raise UsageError(f"gate '{gate.name}' bounds the change against a baseline: pass --baseline DIR")
            results.append(_evaluate_relative(gate, rows, baseline.table))
        else:
            results.append(_evaluate_absolute(gate, rows))
    if warn_only:
        results = [
            GateResult(r.gate, "warn", r.value, r.bound, r.message, r.rows, r.baseline) if r.status == "fail" else r
            for r in results
        ]
    return results


def exit_code(results: Iterable[GateResult]) -> int:
    """0 when no gate failed, 1 otherwise (the exit codes in the README)."""
    return 1 if any(r.status == "fail" for r in results) else 0


def summary_line(results: Sequence[GateResult]) -> str:
    counts = {s: sum(r.status == s for r in results) for s in ("pass", "warn", "fail")}
    return f"{len(results)} gates: {counts['pass']} passed, {counts['warn']} warned, {counts['fail']} failed"


# --- JUnit -----------------------------------------------------------------------------------


def _xml(text: str) -> str:
    return _XML_INVALID.sub("?", text)


def junit_xml(results: Sequence[GateResult] | dict[str, Sequence[GateResult]], suite: str = "robustcnn gates") -> str:
    """JUnit XML: one testcase per gate (one testsuite per model when ``results`` is a dict of them);
    a failed gate is a ``<failure>`` whose message holds the measured value and the bound;
    warnings and passes carry the same text in ``<system-out>``."""
    suites = results if isinstance(results, dict) else {suite: results}
    every = [r for rs in suites.values() for r in rs]
    failures = str(sum(r.status == "fail" for r in every))
    root = ET.Element("testsuites", name="robustcnn", tests=str(len(every)), failures=failures, errors="0")
    for suite_name, suite_results in suites.items():
        count = str(sum(r.status == "fail" for r in suite_results))
        ts = ET.SubElement(
            root,
            "testsuite",
            name=_xml(suite_name),
            tests=str(len(suite_results)),
            failures=count,
            errors="0",
            skipped="0",
        )
        for r in suite_results:
            case = ET.SubElement(
                ts, "testcase", name=_xml(r.gate.name), classname=_xml(f"robustcnn.gates.{r.gate.check}"), time="0"
            )
            if r.status == "fail":
                failure = ET.SubElement(case, "failure", message=_xml(r.message), type="GateFailed")
                failure.text = _xml(f"{r.message}\nseverity: {r.gate.severity}")
            else:
                out = ET.SubElement(case, "system-out")
                out.text = _xml(("WARNING: " if r.status == "warn" else "") + r.message)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(
    results: Sequence[GateResult] | dict[str, Sequence[GateResult]], path: str | Path, suite: str = "robustcnn gates"
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(junit_xml(results, suite), encoding="utf-8")
    return path

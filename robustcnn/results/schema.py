"""The long results table: one row per measured number (the README's "Report schema"; docs/architecture.md).

Core columns: ``model, check, metric, value, n, ci_low, ci_high``; every other column is a
parameter of the row (``norm, eps, class, ...``), empty where it does not apply.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ..stats import wilson_interval

SCHEMA_VERSION = 1
CORE_COLUMNS = ["model", "check", "metric", "value", "n", "ci_low", "ci_high"]
PARAM_COLUMNS = [
    "norm",
    "eps",
    "attack",
    "class",
    "target",
    "area",
    "shape",
    "corruption",
    "severity",
    "transform",
    "group_attr",
    "group",
    "ood",
    "score",
    "encoding",
    "variant",
    "split",
]


def rate(metric: str, successes: float, n: int, **params: Any) -> dict[str, Any]:
    """A proportion with its 95% Wilson interval; ``value`` is nan when ``n == 0``."""
    low, high = wilson_interval(successes, n)
    value = successes / n if n > 0 else math.nan
    return {"metric": metric, "value": value, "n": n, "ci_low": low, "ci_high": high, **params}


def value(
    metric: str, v: float, n: int | None = None, ci: tuple[float, float] | None = None, **params: Any
) -> dict[str, Any]:
    """A number that is not a proportion (a norm, a count, a ratio), optionally with an interval."""
    low, high = ci if ci is not None else (math.nan, math.nan)
    return {"metric": metric, "value": float(v), "n": n, "ci_low": low, "ci_high": high, **params}


def tidy(rows: list[dict[str, Any]] | pd.DataFrame, model: str, check: str) -> pd.DataFrame:
    """Rows as a DataFrame with the core columns first, known parameters next, others after."""
    df = pd.DataFrame(rows) if not isinstance(rows, pd.DataFrame) else rows.copy()
    if df.empty:
        return pd.DataFrame(columns=CORE_COLUMNS)
    df["model"] = model
    df["check"] = check
    for col in ("n", "ci_low", "ci_high"):
        if col not in df.columns:
            df[col] = math.nan
    df["value"] = pd.to_numeric(df["value"], errors="coerce").astype(float)
    df["n"] = pd.to_numeric(df["n"], errors="coerce").astype("Int64")
    params = [c for c in PARAM_COLUMNS if c in df.columns]
    extra = sorted(c for c in df.columns if c not in CORE_COLUMNS and c not in PARAM_COLUMNS)
    return df[CORE_COLUMNS + params + extra]


def combine(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate tidy tables, keeping the column order and typing parameter columns for parquet."""
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=CORE_COLUMNS)
    df = pd.concat(frames, ignore_index=True, sort=False)
    params = [c for c in PARAM_COLUMNS if c in df.columns]
    extra = [c for c in df.columns if c not in CORE_COLUMNS and c not in PARAM_COLUMNS]
    df = df[CORE_COLUMNS + params + extra]
    for col in params + extra:
        df[col] = _uniform(df[col])
    return df


def _uniform(col: pd.Series) -> pd.Series:
    """A column that parquet can store: numeric if every value is, else strings with gaps kept empty."""
    non_null = col.dropna()
    if non_null.empty:
        return col.astype("object").where(col.notna(), None)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in non_null):
        return pd.to_numeric(col, errors="coerce")
    return col.map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)).astype("object")


def parquet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """A copy whose object columns hold one type each, so pyarrow can store them."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = _uniform(out[col])
    return out

"""Default, advisory verdicts for scorecard headlines (``audits/default-policy.toml``).

A headline (``robustcnn.checks.Headline``) carries its safer direction; the default policy bounds
it per metric with a ``warn`` and a ``fail`` level. Unlike a user's gate policy, a metric that no
report has is fine here: the policy only judges the headlines it knows.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import tomllib

from ..errors import InvalidInputError

DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "audits" / "default-policy.toml"


@lru_cache(maxsize=4)
def load_default_policy(path: Path = DEFAULT_POLICY) -> dict[str, dict[str, float]]:
    """``{metric: {"warn": bound, "fail": bound}}``; empty when the file is not installed."""
    if not path.is_file():
        return {}
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInputError(f"default policy {path} is not valid TOML: {exc}") from exc
    return {
        name: {k: float(v) for k, v in bounds.items() if k in ("warn", "fail")}
        for name, bounds in (raw.get("metric") or {}).items()
    }


def default_verdict(headline: Any, policy: dict[str, dict[str, float]] | None = None) -> str:
    """``"pass"``, ``"warn"`` or ``"fail"`` for a headline under the default policy; ``""`` when
    the policy has no bound for its metric or the value is missing."""
    policy = load_default_policy() if policy is None else policy
    bounds = policy.get(str((getattr(headline, "where", None) or {}).get("metric", "")))
    value = getattr(headline, "value", math.nan)
    if not bounds or value is None or math.isnan(value):
        return ""
    worse = (lambda v, b: v < b) if headline.better == "higher" else (lambda v, b: v > b)
    if "fail" in bounds and worse(value, bounds["fail"]):
        return "fail"
    if "warn" in bounds and worse(value, bounds["warn"]):
        return "warn"
    return "pass"

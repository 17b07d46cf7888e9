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
def load_default_policy(path: Path = DEFAULT_POLICY) -> dict[str, dict[str, Any]]:
    """``{metric: {"warn": bound, "fail": bound, "where": {column: value}}}`` (``where`` only when
    the file gives one); empty when the file is not installed."""
    if not path.is_file():
        return {}
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInputError(f"default policy {path} is not valid TOML: {exc}") from exc
    policy: dict[str, dict[str, Any]] = {}
    for name, entry in (raw.get("metric") or {}).items():
        policy[name] = {k: float(v) for k, v in entry.items() if k in ("warn", "fail")}
        if isinstance(entry.get("where"), dict):
            policy[name]["where"] = dict(entry["where"])
    return policy


def default_verdict(headline: Any, policy: dict[str, dict[str, Any]] | None = None) -> str:
    """``"pass"``, ``"warn"`` or ``"fail"`` for a headline under the default policy; ``""`` when
    the policy has no bound for its metric, the headline's row does not match the bound's
    ``where`` (e.g. an L2 perturbation under an L-inf bound), or the value is missing."""
    policy = load_default_policy() if policy is None else policy
    where = getattr(headline, "where", None) or {}
    bounds = policy.get(str(where.get("metric", "")))
    value = getattr(headline, "value", math.nan)
    if not bounds or value is None or math.isnan(value):
        return ""
    if any(str(where.get(k)) != str(v) for k, v in (bounds.get("where") or {}).items()):
        return ""
    worse = (lambda v, b: v < b) if headline.better == "higher" else (lambda v, b: v > b)
    if "fail" in bounds and worse(value, bounds["fail"]):
        return "fail"
    if "warn" in bounds and worse(value, bounds["warn"]):
        return "warn"
    return "pass"

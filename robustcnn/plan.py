"""Audit plans: which model(s), which data, which checks with which options, and gates.

A plan is a TOML file (see ``audits/demo.toml``) or the same structure built from CLI
flags; flags override the file. Unknown keys are errors, so typos never pass silently.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import InvalidInputError
from .models import ModelRef

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MODEL_KEYS = {"spec", "arch", "num_classes", "in_channels", "input_size", "mean", "std", "trust_model", "name"}
DATA_KEYS = {"spec", "n"}
RUN_KEYS = {"seed", "device", "batch_size", "checks", "out", "baseline", "shard_size"}
TOP_KEYS = {"model", "data", "run", "checks", "gate", "description"}
DEFAULT_CHECKS = ["clean"]


@dataclass
class Plan:
    """A resolved plan; ``to_dict()`` is what ``meta.json`` records."""

    models: list[ModelRef] = field(default_factory=lambda: [ModelRef()])
    data: str = "mnist5k"
    n: int | None = None
    seed: int = 0
    device: str = "cpu"
    batch_size: int = 256
    checks: list[str] = field(default_factory=lambda: list(DEFAULT_CHECKS))
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    out: str | None = None
    baseline: str | None = None
    shard_size: int | None = None
    gates: list[dict[str, Any]] = field(default_factory=list)
    source: str | None = None
    optional: list[str] = field(default_factory=list)  # checks skipped with a note when the data cannot feed them

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "models": [m.describe() for m in self.models],
            "data": self.data,
            "n": self.n,
            "seed": self.seed,
            "device": self.device,
            "batch_size": self.batch_size,
            "checks": self.checks,
            "options": self.options,
            "baseline": self.baseline,
            "gates": self.gates,
        }

    def with_overrides(self, **overrides: Any) -> "Plan":
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan file; errors name the file and the key."""
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"plan file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"plan {path} is not valid TOML: {exc}") from exc
    plan = plan_from_dict(raw, str(path))
    return plan


def plan_from_dict(raw: dict[str, Any], source: str = "<dict>") -> Plan:
    _reject_unknown(raw, TOP_KEYS, source, "top level")
    models_raw = raw.get("model", {"spec": "demo:mnist-cnn"})
    if isinstance(models_raw, dict):
        models_raw = [models_raw]
    models = [_model_ref(m, source) for m in models_raw]
    if not models:
        raise InvalidInputError(f"{source}: the plan names no model")
    data = raw.get("data", {})
    _reject_unknown(data, DATA_KEYS, source, "[data]")
    run = raw.get("run", {})
    _reject_unknown(run, RUN_KEYS, source, "[run]")
    options = raw.get("checks", {})
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        raise InvalidInputError(f"{source}: [checks.<name>] tables must hold each check's options")
    checks = run.get("checks", list(DEFAULT_CHECKS))
    plan = Plan(
        models=models,
        data=str(data.get("spec", "mnist5k")),
        n=data.get("n"),
        seed=int(run.get("seed", 0)),
        device=str(run.get("device", "cpu")),
        batch_size=int(run.get("batch_size", 256)),
        checks=list(checks),
        options={k: dict(v) for k, v in options.items()},
        out=run.get("out"),
        baseline=run.get("baseline"),
        shard_size=run.get("shard_size"),
        gates=list(raw.get("gate", [])),
        source=source,
    )
    validate_plan(plan)
    return plan


def validate_plan(plan: Plan) -> None:
    """Check names, option tables and numbers, before anything is loaded or trained."""
    from .checks import get_check

    if not plan.checks:
        raise InvalidInputError("the plan selects no checks; list some in [run] checks or --checks")
    for name in plan.checks:
        get_check(name)
    for name in plan.options:
        get_check(name)
    if len(set(plan.checks)) != len(plan.checks):
        raise InvalidInputError("a check is listed twice in the plan")
    if plan.n is not None and (not isinstance(plan.n, int) or plan.n < 1):
        raise InvalidInputError(f"n must be a positive integer, got {plan.n!r}")
    if plan.batch_size < 1:
        raise InvalidInputError(f"batch_size must be positive, got {plan.batch_size}")
    if plan.shard_size is not None and plan.shard_size < 1:
        raise InvalidInputError(f"shard_size must be positive, got {plan.shard_size}")


def _reject_unknown(table: Any, known: set[str], source: str, where: str) -> None:
    if not isinstance(table, dict):
        raise InvalidInputError(f"{source}: {where} must be a table")
    unknown = sorted(set(table) - known)
    if unknown:
        raise InvalidInputError(f"{source}: unknown key {', '.join(map(repr, unknown))} in {where}; known keys: {', '.join(sorted(known))}")


def _model_ref(table: dict[str, Any], source: str) -> ModelRef:
    _reject_unknown(table, MODEL_KEYS, source, "[model]")
    if "spec" not in table:
        raise InvalidInputError(f"{source}: [model] needs spec = \"path/to/model.pt\" or \"demo:mnist-cnn\"")
    size = table.get("input_size")
    return ModelRef(
        spec=str(table["spec"]),
        arch=table.get("arch"),
        num_classes=table.get("num_classes"),
        in_channels=table.get("in_channels"),
        input_size=tuple(size) if size else None,
        mean=tuple(table["mean"]) if "mean" in table else None,
        std=tuple(table["std"]) if "std" in table else None,
        trust=bool(table.get("trust_model", False)),
        name=table.get("name"),
    )

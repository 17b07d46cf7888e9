"""Python entry points: ``audit()`` runs checks on a model and returns a ``Report``;
``load_report()`` reads a report directory back."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from .models import ModelRef
from .plan import Plan, load_plan, merge_options, parse_set, validate_plan
from .reports.report import Report, report_files
from .runner import audit_model, default_out


def audit(
    model: str | ModelRef | nn.Module | None = None,
    data: str | None = None,
    checks: Sequence[str] | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    n: int | None = None,
    out: str | Path | None = None,
    seed: int | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    arch: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    trust_model: bool = False,
    baseline: str | Path | None = None,
    plan: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
    force: bool = False,
    resize: int | None = None,
    center_crop: int | tuple[int, int] | None = None,
    train_n: int | None = None,
    max_minutes: float | None = None,
    overrides: Sequence[str] = (),
) -> Report:
    """Audit one model and write its report directory; returns the loaded ``Report``.

    ``model`` is a path, a ``demo:`` name, a ``ModelRef`` or an in-memory ``nn.Module``
    taking [0, 1] pixels (after ``mean``/``std``). Arguments left as None take the plan's
    values (``plan`` file, else the defaults: mnist5k, seed 0, cpu, a batch size fitted to the model).
    ``out`` must be new, empty or an earlier report unless ``force`` (see ``results.writer``).
    ``resize``/``center_crop`` (torchvision's eval transforms) and ``train_n`` are as on the CLI.
    ``max_minutes`` stops at the first task boundary after that long with a partial report
    (``report.meta["status"] == "partial"``; ``resume=True`` finishes it).
    ``options`` (``{check: {option: value}}``) and then ``overrides`` (``"CHECK.KEY=VALUE"`` strings,
    as the CLI's ``--set``) are merged option by option into the plan's ``[checks.<name>]`` tables.
    """
    base = load_plan(plan) if plan is not None else Plan()
    if isinstance(model, ModelRef):
        ref = model
    elif isinstance(model, nn.Module):
        ref = ModelRef(spec="<in-memory>", module=model, mean=_tuple(mean), std=_tuple(std))
    elif model is None:
        ref = base.models[0]
    else:
        ref = ModelRef(spec=str(model), arch=arch, mean=_tuple(mean), std=_tuple(std), trust=trust_model)
    resolved = base.with_overrides(
        models=[ref],
        data=data,
        checks=list(checks) if checks is not None else None,
        options=merge_options(base.options, options, parse_set(overrides)),
        n=n,
        resize=resize,
        center_crop=(center_crop, center_crop) if isinstance(center_crop, int) else center_crop,
        train_n=train_n,
        seed=seed,
        device=device,
        batch_size=batch_size,
        out=str(out) if out is not None else None,
        baseline=str(baseline) if baseline is not None else None,
        max_minutes=max_minutes,
    )
    validate_plan(resolved)
    out_dir = default_out(ref, resolved)
    return Report.of(
        audit_model(resolved, ref, out_dir, resume=resume, progress=progress, force=force, rendered=report_files())
    )


def load_report(path: str | Path) -> Report:
    """Read a complete report directory (``results.parquet``, ``meta.json``, ...)."""
    return Report.load(path)


def _tuple(values: Sequence[float] | None) -> tuple[float, ...] | None:
    return tuple(float(v) for v in values) if values is not None else None

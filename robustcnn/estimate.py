"""What an audit will cost, known before it runs: model passes per check and an estimated time.

Each check states its passes as a function of its options and the data (``Check.estimate_passes``):
images pushed forward through the model, and how many of them also went backward to the input
(as ``models.EvalCounter`` counts them, so the estimate and ``meta.json``'s measured passes compare
directly). A calibration times one forward and one forward+backward pass on a batch of the sampled
images on the chosen device; estimated seconds are passes times those per-image times. Work other
than model passes (decoding, corrupting images, fitting probes) is not in the estimate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from .models import AuditedModel

CALIBRATION_IMAGES = 32  # images per calibration batch (the sample is tiled when smaller)


@dataclass(frozen=True)
class Passes:
    """Images through the model: ``forward`` in all, ``backward`` of them with an input gradient.

    ``bound`` marks an upper bound: the check stops early for images (or classes) where it succeeds,
    so it usually spends less. ``note`` says what the count leaves out or assumes.
    """

    forward: int
    backward: int = 0
    bound: bool = False
    note: str = ""

    def __add__(self, other: Passes) -> Passes:
        note = "; ".join(n for n in (self.note, other.note) if n)
        return Passes(self.forward + other.forward, self.backward + other.backward, self.bound or other.bound, note)


@dataclass(frozen=True)
class CostInputs:
    """What a check's cost depends on besides its options."""

    n: int  # evaluation images
    shape: tuple[int, int, int]  # (C, H, W) at the model's input
    num_classes: int
    n_train: int  # training images a check may read (the planned train_n sample; 0 without a training split)
    batch_size: int
    before: tuple[str, ...] = ()  # checks that run earlier in this audit (their artifacts exist)


@dataclass(frozen=True)
class Calibration:
    """Seconds per image of a forward pass and of a forward+backward (input gradient) pass."""

    forward_s: float
    backward_s: float
    batch: int
    device: str

    def seconds(self, passes: Passes) -> float:
        slow = passes.backward * self.backward_s if passes.backward else 0.0
        return (passes.forward - passes.backward) * self.forward_s + slow

    def to_dict(self) -> dict[str, Any]:
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class CheckEstimate:
    """One line of the plan: a check, its images and tasks, its passes (None: the check cannot say) and seconds."""

    check: str
    images: int
    tasks: int
    passes: Passes | None
    seconds: float | None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"images": self.images, "tasks": self.tasks}
        if self.passes is not None:
            out |= {"forward": self.passes.forward, "backward": self.passes.backward, "bound": self.passes.bound}
            out |= {"note": self.passes.note} if self.passes.note else {}
        out["seconds"] = self.seconds
        return out


def calibrate(model: AuditedModel, x: torch.Tensor, batch_size: int, backward: bool = True) -> Calibration:
    """Time the model on a batch of ``x`` (tiled to ``min(batch_size, CALIBRATION_IMAGES)`` images):
    one warm-up forward and one timed forward, then (with ``backward``) the faster of two
    forward+backward passes to the input; without it ``backward_s`` is NaN (no check needs it, and
    the backward pass's activations would raise the run's peak memory). The model's pass counter is
    left as it was."""
    size = max(1, min(batch_size, CALIBRATION_IMAGES))
    batch = x.repeat(math.ceil(size / max(len(x), 1)), 1, 1, 1)[:size].to(model.device)
    counted = model.counter.snapshot()
    try:
        with torch.no_grad():
            _timed(model, lambda: model(batch))  # warm-up: first-call allocations and kernel choices
            forward = _timed(model, lambda: model(batch))
        slow = math.nan
        if backward:
            slow = max(min(_timed(model, _input_gradient(model, batch)) for _ in range(2)), forward)
    finally:
        model.counter.forward, model.counter.backward = counted
    return Calibration(forward / size, slow / size, size, str(model.device))


def with_backward(calibration: Calibration, model: AuditedModel, x: torch.Tensor, batch_size: int) -> Calibration:
    """``calibration`` with its forward+backward time measured, if it has none yet."""
    if not math.isnan(calibration.backward_s):
        return calibration
    measured = calibrate(model, x, batch_size)
    return Calibration(calibration.forward_s, measured.backward_s, calibration.batch, calibration.device)


def _input_gradient(model: AuditedModel, batch: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        xa = batch.clone().requires_grad_(True)
        torch.autograd.grad(model(xa).float().logsumexp(1).sum(), xa)

    return run


def _timed(model: AuditedModel, fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    _sync(model)
    return time.perf_counter() - started


def _sync(model: AuditedModel) -> None:
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)


def estimate(check: Any, inputs: CostInputs, tasks: int, calibration: Calibration | None) -> CheckEstimate:
    """The plan line of ``check``; a check without ``estimate_passes`` (or one that fails) gets None."""
    try:
        passes = check.estimate_passes(inputs)
    except Exception:  # an estimate must never stop an audit
        passes = None
    seconds = calibration.seconds(passes) if passes is not None and calibration is not None else None
    return CheckEstimate(check.name, inputs.n, tasks, passes, seconds)


def plan_table(rows: list[CheckEstimate], calibration: Calibration | None) -> str:
    """The plan as a text table: check, images, tasks, forward and backward passes, estimated time."""
    header = ("check", "images", "tasks", "forward", "backward", "est. time")
    lines = [header]
    for r in rows:
        mark = "<=" if r.passes is not None and r.passes.bound else ""
        fwd = f"{mark if r.passes.forward else ''}{r.passes.forward:,}" if r.passes is not None else "?"
        bwd = f"{mark if r.passes.backward else ''}{r.passes.backward:,}" if r.passes is not None else "?"
        lines.append((r.check, f"{r.images:,}", str(r.tasks), fwd, bwd, format_seconds(r.seconds)))
    known = [r.seconds for r in rows if r.seconds is not None]
    total = format_seconds(sum(known)) + (" + ?" if len(known) < len(rows) else "") if known else "?"
    lines.append(("total", "", str(sum(r.tasks for r in rows)), "", "", total))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    ]
    if calibration is not None:
        slow = calibration.backward_s
        both = "" if math.isnan(slow) else f", forward+backward {slow * 1e3:.3g} ms"
        text.append(
            f"calibration on {calibration.device}, {calibration.batch} images: forward {calibration.forward_s * 1e3:.3g} ms"
            f"{both} per image; model time only, '<=' marks checks that stop early where they succeed"
        )
    return "\n".join(text)


def format_seconds(seconds: float | None) -> str:
    """``42 s``, ``3 min 20 s``, ``1 h 05 min``; ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = round(seconds)
    if s < 60:
        return f"{max(s, 0)} s" if seconds >= 0.5 else "<1 s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class Eta:
    """Time left, from the estimate corrected by the run's own pace: the ratio of measured to
    estimated seconds over the checks finished so far scales what remains. The ratio starts at 1
    and is damped by a prior of ``max(5 s, 10% of the estimate)``, so a check of a fraction of a
    second (where fixed costs dominate) cannot swing it."""

    def __init__(self, estimates: dict[str, float | None]) -> None:
        self.estimates = estimates
        self.done: list[str] = []
        self.measured = 0.0
        self.check = ""
        self.fraction = 0.0  # of the current check's tasks done

    def start(self, check: str) -> None:
        self.check, self.fraction = check, 0.0

    def finish(self, check: str, seconds: float) -> None:
        if self.estimates.get(check) is not None:
            self.done.append(check)
            self.measured += seconds

    def remaining(self) -> float | None:
        """Seconds left, or None while no check of what remains has an estimate."""
        estimated = sum(self.estimates[c] or 0.0 for c in self.done)
        prior = max(5.0, 0.1 * sum(v for v in self.estimates.values() if v is not None))
        pace = (self.measured + prior) / (estimated + prior)
        later = [c for c in self.estimates if c not in self.done and c != self.check]
        current = self.estimates.get(self.check)
        left = [self.estimates[c] for c in later if self.estimates[c] is not None]
        if current is not None and self.check not in self.done:
            left.append(current * (1.0 - self.fraction))
        return pace * sum(left) if left or not later else None  # type: ignore[arg-type]

    def text(self) -> str:
        left = self.remaining()
        unknown = any(v is None for c, v in self.estimates.items() if c not in self.done)
        return f"about {format_seconds(left)} left" + (" + ?" if unknown else "") if left is not None else "time left ?"

"""What an audit will cost, known before it runs: model passes per check and an estimated time.

Each check states its passes as a function of its options and the data (``Check.estimate_passes``):
images pushed forward through the model, and how many of them also went backward to the input
(as ``models.EvalCounter`` counts them, so the estimate and ``meta.json``'s measured passes compare
directly). A calibration times model calls on two batch sizes of the sampled images on the chosen
device and fits a cost per call and per image (``CallCost``); estimated seconds are the passes at the
check's images per call times that cost. Work other than model passes (decoding, corrupting images,
fitting probes) is not in the estimate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from .models import MIN_BATCH, AuditedModel

CALIBRATION_IMAGES = 32  # images of the larger calibration batch (the sample is tiled when smaller)


@dataclass(frozen=True)
class Passes:
    """Images through the model: ``forward`` in all, ``backward`` of them with an input gradient.

    ``bound`` marks an upper bound: the check stops early for images (or classes) where it succeeds,
    so it usually spends less. ``note`` says what the count leaves out or assumes. ``batch`` is the
    images per model call when the check does not use the run's batch size (one image per class, a
    population); small calls cost more per image.
    """

    forward: int
    backward: int = 0
    bound: bool = False
    note: str = ""
    batch: int | None = None

    def __add__(self, other: Passes) -> Passes:
        note = "; ".join(n for n in (self.note, other.note) if n)
        batch = self.batch if self.forward >= other.forward else other.batch  # the larger part's
        return Passes(
            self.forward + other.forward, self.backward + other.backward, self.bound or other.bound, note, batch
        )


@dataclass(frozen=True)
class CostInputs:
    """What a check's cost depends on besides its options."""

    n: int  # evaluation images
    shape: tuple[int, int, int]  # (C, H, W) at the model's input
    num_classes: int
    n_train: int  # training images a check may read (the planned train_n sample; 0 without a training split)
    batch_size: int
    before: tuple[str, ...] = ()  # checks that run earlier in this audit (their artifacts exist)
    accuracy: float = 1.0  # share of evaluation images classified correctly (from a few; attacks skip the others)

    @property
    def correct(self) -> int:
        """Evaluation images expected to be classified correctly."""
        return round(self.n * self.accuracy)


@dataclass(frozen=True)
class CallCost:
    """Seconds of one model call on ``b`` images: ``call + image * b``, ``b`` at least ``MIN_BATCH``
    (the wrapper pads smaller batches), fitted to two timed batch sizes. The per-image cost is kept
    at least half the per-image time of the larger batch, so timing noise on a busy machine cannot
    make large batches look free."""

    call: float
    image: float

    @classmethod
    def fit(cls, small: int, small_s: float, large: int, large_s: float) -> CallCost:
        if large <= small:
            return cls(0.0, large_s / large)
        image = max((large_s - small_s) / (large - small), 0.5 * large_s / large)
        return cls(max(small_s - image * small, 0.0), image)

    def per_image(self, batch: int) -> float:
        return self.call / max(batch, MIN_BATCH) + self.image


@dataclass(frozen=True)
class Calibration:
    """The cost of a model call, forward and forward+backward (input gradient; None when untimed)."""

    forward: CallCost
    backward: CallCost | None
    batch: int  # the larger batch timed
    device: str

    def seconds(self, passes: Passes, batch: int) -> float:
        """Seconds of ``passes`` run ``passes.batch`` (else ``batch``) images a call."""
        size = passes.batch or batch
        slow = passes.backward * self.backward.per_image(size) if passes.backward and self.backward else 0.0
        return (passes.forward - passes.backward) * self.forward.per_image(size) + slow

    def to_dict(self) -> dict[str, Any]:
        """Seconds per image at ``batch`` (``forward_s``, ``backward_s``) and the fitted per-call costs."""
        slow = self.backward
        return {
            "forward_s": self.forward.per_image(self.batch),
            "backward_s": slow.per_image(self.batch) if slow else None,
            "forward": asdict(self.forward),
            "backward": asdict(slow) if slow else None,
            "batch": self.batch,
            "device": self.device,
        }


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
            out |= {"batch": self.passes.batch} if self.passes.batch else {}
            out |= {"note": self.passes.note} if self.passes.note else {}
        out["seconds"] = self.seconds
        return out


def calibrate(model: AuditedModel, x: torch.Tensor, batch_size: int, backward: bool = True) -> Calibration:
    """Time model calls on ``MIN_BATCH`` and on ``min(batch_size, CALIBRATION_IMAGES)`` images of ``x``
    (tiled when fewer) after a warm-up, and fit a per-call and a per-image cost (``CallCost``); with
    ``backward`` also forward+backward passes to the input (else ``backward`` is None: no check needs
    it, and its activations would raise the run's peak memory). The model's pass counter is left as it was."""
    large = max(MIN_BATCH, min(batch_size, CALIBRATION_IMAGES))
    batch = x.repeat(math.ceil(large / max(len(x), 1)), 1, 1, 1)[:large].to(model.device)
    small = batch[:MIN_BATCH]
    counted = model.counter.snapshot()
    try:
        with torch.no_grad():
            _timed(model, lambda: model(batch))  # warm-up: first-call allocations and kernel choices
            forward = CallCost.fit(
                MIN_BATCH, _timed(model, lambda: model(small), 3), large, _timed(model, lambda: model(batch), 3)
            )
        slow = None
        if backward:
            _timed(model, _input_gradient(model, small))
            slow = CallCost.fit(
                MIN_BATCH,
                _timed(model, _input_gradient(model, small), 2),
                large,
                _timed(model, _input_gradient(model, batch), 2),
            )
    finally:
        model.counter.forward, model.counter.backward = counted
    return Calibration(forward, slow, large, str(model.device))


def with_backward(calibration: Calibration, model: AuditedModel, x: torch.Tensor, batch_size: int) -> Calibration:
    """``calibration`` with its forward+backward cost measured, if it has none yet."""
    if calibration.backward is not None:
        return calibration
    return replace(calibration, backward=calibrate(model, x, batch_size).backward)


def _input_gradient(model: AuditedModel, batch: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        xa = batch.clone().requires_grad_(True)
        torch.autograd.grad(model(xa).float().logsumexp(1).sum(), xa)

    return run


def _timed(model: AuditedModel, fn: Callable[[], object], repeats: int = 1) -> float:
    """The fastest of ``repeats`` runs of ``fn`` (other load on the machine only slows a run down)."""
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        _sync(model)
        best = min(best, time.perf_counter() - started)
    return best


def _sync(model: AuditedModel) -> None:
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)


def estimate(check: Any, inputs: CostInputs, tasks: int, calibration: Calibration | None) -> CheckEstimate:
    """The plan line of ``check``; a check without ``estimate_passes`` (or one that fails) gets None.
    Passes without their own ``batch`` run ``min(batch_size, n)`` images a call."""
    try:
        passes = check.estimate_passes(inputs)
    except Exception:  # an estimate must never stop an audit
        passes = None
    batch = max(1, min(inputs.batch_size, inputs.n))
    seconds = calibration.seconds(passes, batch) if passes is not None and calibration is not None else None
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
        fast, slow = calibration.forward, calibration.backward
        both = "" if slow is None else f", forward+backward {slow.per_image(calibration.batch) * 1e3:.3g} ms"
        text.append(
            f"calibration on {calibration.device}, {calibration.batch} images a call: forward "
            f"{fast.per_image(calibration.batch) * 1e3:.3g} ms{both} per image; model time only, '<=' marks "
            "checks that stop early where they succeed"
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

"""What an audit will cost, known before it runs: model passes per check and an estimated time.

Each check states its passes as a function of its options and the data (``Check.estimate_passes``):
images pushed forward through the model, and how many of them also went backward to the input
(as ``models.EvalCounter`` counts them, so the estimate and ``meta.json``'s measured passes compare
directly), in parts that each say how many images a call holds (``Passes.batch``: the run's batch,
one image per class, the few correctly classified images of a shard an attack steps on).

A calibration times model calls on the chosen device, forward and (when a check needs it)
forward+backward to the input, at ``MIN_BATCH`` images and at the run's batch size (as far as a
call takes at most ``LARGE_CALL_S``), and fits a cost per call and per image (``CallCost``): a call on fewer
than ``MIN_BATCH`` images costs as many (the wrapper pads it), and on small images a batch of 256
runs several times cheaper per image than one of 32. Foolbox's attacks call ``loss.backward()``,
which also computes the weights' gradients; their parts are costed by a call timed that way.

Each check also states its work besides model calls (``Check.estimate_work``): generating,
corrupting or transforming images, breeding populations, fitting probes and rendering figures. The
calibration's ``Probe`` times a piece of that work on the calibration images before the run (a
corruption of a few images, a population, a figure of 1 and of 6 panels and a chart) and the check
scales it to its images and options. Estimated seconds are the model time plus that work; the
plan, ``--dry-run`` and ``meta.json`` show both (``model_seconds``, ``work_seconds``) and what
calibrating and probing cost. Nothing is specific to a device: on a GPU the same calls are timed
there (synchronised). The estimate is a realistic expectation where the work is known; checks that
stop early where they succeed mark their passes an upper bound (``<=``). Other load on the machine
while the audit runs is not foreseen.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from .models import MIN_BATCH, AuditedModel

log = logging.getLogger(__name__)

CALIBRATION_IMAGES = 32  # calibration images the probe keeps
LARGE_CALL_S = 0.5  # seconds a forward call of the larger calibration batch may take (up to the run's batch
# size): small images on a CPU, and any on a GPU, run several times cheaper per image in a batch of 256 than of 32
REPEAT_BUDGET = 0.5  # seconds: a timing is repeated (best of) only while its runs took less
FIGURE_PANELS = 6  # panels of the larger figure the probe renders


@dataclass(frozen=True)
class Passes:
    """Images through the model: ``forward`` in all, ``backward`` of them with an input gradient.

    ``bound`` marks an upper bound: the check stops early for images (or classes) where it succeeds,
    so it usually spends less. ``note`` says what the count leaves out or assumes. ``batch`` is the
    images per model call when the check does not use the run's batch size (one image per class, the
    few correctly classified images of a shard); a call of fewer than ``MIN_BATCH`` images costs as
    many as ``MIN_BATCH`` (the wrapper pads it). A sum keeps its terms as ``parts``, each at its own
    call size.
    """

    forward: int
    backward: int = 0
    bound: bool = False
    note: str = ""
    batch: int | None = None
    parts: tuple[Passes, ...] = ()
    weights: bool = False  # the backward passes also compute the weights' gradients (foolbox's loss.backward())

    def __add__(self, other: Passes) -> Passes:
        note = "; ".join(n for n in (self.note, other.note) if n)
        batch = self.batch if self.forward >= other.forward else other.batch  # the larger part's
        return Passes(
            self.forward + other.forward,
            self.backward + other.backward,
            self.bound or other.bound,
            note,
            batch,
            self.terms() + other.terms(),
        )

    def terms(self) -> tuple[Passes, ...]:
        """The parts of a sum, or the passes themselves."""
        return self.parts or ((self,) if self.forward else ())


@dataclass(frozen=True)
class Work:
    """Seconds a check spends besides model calls (generating or corrupting images, attack and optimiser
    bookkeeping, fitting probes, rendering figures), from timings taken before the run (``Probe``)."""

    seconds: float = 0.0
    note: str = ""

    def __add__(self, other: Work) -> Work:
        return Work(self.seconds + other.seconds, "; ".join(n for n in (self.note, other.note) if n))


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
    tasks: int = 1  # the check's tasks: shards of the evaluation images for a per-image check

    @property
    def correct(self) -> int:
        """Evaluation images expected to be classified correctly."""
        return round(self.n * self.accuracy)

    def per_call(self, images: int) -> int:
        """Images a model call holds when ``images`` are split over the tasks and then into batches."""
        return max(1, min(self.batch_size, math.ceil(images / max(self.tasks, 1))))


@dataclass(frozen=True)
class CallCost:
    """Seconds of one model call on ``b`` images: ``call + image * max(b, MIN_BATCH)`` (the wrapper pads
    smaller batches), fitted to two timed batch sizes. The per-image cost is kept at least half the
    per-image time of the larger batch, so timing noise on a busy machine cannot make large batches
    look free."""

    call: float
    image: float

    @classmethod
    def fit(cls, small: int, small_s: float, large: int, large_s: float) -> CallCost:
        if large <= small:
            return cls(0.0, large_s / large)
        image = max((large_s - small_s) / (large - small), 0.5 * large_s / large)
        return cls(max(small_s - image * small, 0.0), image)

    def per_image(self, batch: int) -> float:
        """Seconds per image of calls holding ``batch`` images each."""
        return (self.call + self.image * max(batch, MIN_BATCH)) / max(batch, 1)


@dataclass(frozen=True)
class Calibration:
    """The cost of a model call, forward and forward+backward (input gradient; None when untimed), and
    the ``probe`` that times the checks' other work on the calibration images (None when loaded back)."""

    forward: CallCost
    backward: CallCost | None
    batch: int  # the larger batch timed
    device: str
    seconds: float = 0.0  # what timing the model calls cost
    probe: Probe | None = field(default=None, compare=False, repr=False)

    def seconds_of(self, passes: Passes, batch: int) -> float:
        """Seconds of ``passes``, each part run ``part.batch`` (else ``batch``) images a call."""
        total = 0.0
        for part in passes.terms():
            size = part.batch or batch
            cost = self.probe.weights_backward() if part.weights and self.probe is not None else self.backward
            slow = part.backward * cost.per_image(size) if part.backward and cost else 0.0
            total += (part.forward - part.backward) * self.forward.per_image(size) + slow
        return total

    def to_dict(self) -> dict[str, Any]:
        """Seconds per image at ``batch`` (``forward_s``, ``backward_s``), the fitted per-call costs and
        what calibrating and probing cost (``calibration_s``, ``probes_s``)."""
        slow = self.backward
        return {
            "forward_s": self.forward.per_image(self.batch),
            "backward_s": slow.per_image(self.batch) if slow else None,
            "forward": asdict(self.forward),
            "backward": asdict(slow) if slow else None,
            "batch": self.batch,
            "device": self.device,
            "calibration_s": self.seconds,
            "probes_s": self.probe.spent if self.probe is not None else 0.0,
        }


class Probe:
    """Times pieces of the checks' own work on the calibration images ``x`` before the run: ``timed``
    runs a piece once per key (a corruption of a few images, a population of random images) and
    ``figure`` the rendering of a figure. ``spent`` is what probing cost. The model's pass counter is
    left as it was."""

    def __init__(self, model: AuditedModel, x: torch.Tensor, batch: int = CALIBRATION_IMAGES) -> None:
        self.model, self.x, self.batch = model, x, batch
        self.spent = 0.0
        self._seconds: dict[Any, float] = {}

    def weights_backward(self) -> CallCost:
        """The cost of a forward+backward call that also computes the weights' gradients, as foolbox's
        attacks run it (``loss.backward()``); timed like ``calibrate``'s input-gradient calls."""
        batch = _tiled(self.x, self.batch).to(self.model.device)

        def run(images: torch.Tensor) -> Callable[[], None]:
            def step() -> None:
                xa = images.clone().requires_grad_(True)
                self.model(xa).float().logsumexp(1).sum().backward()
                self.model.zero_grad(set_to_none=True)

            return step

        small = self.timed(("weights", "warm-up"), run(batch[:MIN_BATCH]))
        if small < REPEAT_BUDGET:
            small = self.timed(("weights", MIN_BATCH), run(batch[:MIN_BATCH]), 3)
        if self.batch == MIN_BATCH:
            return CallCost(0.0, small / MIN_BATCH)
        return CallCost.fit(MIN_BATCH, small, self.batch, self.timed(("weights", self.batch), run(batch), 3))

    def timed(self, key: Any, fn: Callable[[], object], repeats: int = 1) -> float:
        """Seconds of ``fn`` (the fastest of ``repeats`` runs), measured once per ``key``."""
        if key not in self._seconds:
            started, counted = time.perf_counter(), self.model.counter.snapshot()
            try:
                self._seconds[key] = _timed(self.model, fn, repeats)
            finally:
                self.model.counter.forward, self.model.counter.backward = counted
                self.spent += time.perf_counter() - started
        return self._seconds[key]

    def figures(self, grids: Sequence[int] = (), charts: Sequence[int] = ()) -> Work:
        """Rendering figures to PNG: image grids with these numbers of titled panels and charts with these
        numbers of subplots (axes, ticks, legend). Each costs a base plus a cost per panel or subplot,
        fitted to a grid of 1 and of ``FIGURE_PANELS`` calibration images and a chart of 2 histograms."""
        from .results.plots import figure_png, image_grid, plt

        def grid(k: int) -> Callable[[], object]:
            images = self.x[torch.arange(k) % len(self.x)].cpu()
            return lambda: image_grid(images, [f"class {i} (99%)" for i in range(k)], suptitle="probe")

        def chart() -> object:
            fig, axes = plt.subplots(1, 2, figsize=(6.8, 2.5), layout="constrained")
            values = self.x.flatten(1).mean(1).cpu().numpy()
            for ax in axes:
                ax.hist(values, bins=30, alpha=0.5, label="clean", density=True)
                ax.hist(1 - values, bins=30, alpha=0.5, label="other", density=True)
                ax.axvline(0.5, ls="--")
                ax.set_yscale("log")
                ax.set_xlabel("score")
                ax.set_ylabel("density")
                ax.set_title("probe", fontsize=9)
                ax.legend(fontsize=6)
            return figure_png(fig)

        one = self.timed(("figure", 1), grid(1))
        many = self.timed(("figure", FIGURE_PANELS), grid(FIGURE_PANELS))
        panel = max(many - one, 0.0) / (FIGURE_PANELS - 1)
        base = max(one - panel, 0.0)
        subplot = max(self.timed(("figure", "chart"), chart) - base, 0.0) / 2
        seconds = sum(base + panel * max(p, 1) for p in grids) + sum(base + subplot * max(c, 1) for c in charts)
        count = len(grids) + len(charts)
        return Work(seconds, f"{count} figure{'s' * (count != 1)}")


@dataclass(frozen=True)
class CheckEstimate:
    """One line of the plan: a check, its images and tasks, its passes (None: the check cannot say) and
    seconds: ``model_seconds`` of model calls plus the ``work`` besides them (None: not estimated)."""

    check: str
    images: int
    tasks: int
    passes: Passes | None
    seconds: float | None
    model_seconds: float | None = None
    work: Work | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"images": self.images, "tasks": self.tasks}
        if self.passes is not None:
            out |= {"forward": self.passes.forward, "backward": self.passes.backward, "bound": self.passes.bound}
            out |= {"batch": self.passes.batch} if self.passes.batch else {}
            out |= {"note": self.passes.note} if self.passes.note else {}
        out["seconds"] = self.seconds
        if self.model_seconds is not None:
            out["model_seconds"] = self.model_seconds
            out["work_seconds"] = self.work.seconds if self.work is not None else None
            out |= {"work_note": self.work.note} if self.work is not None and self.work.note else {}
        return out


def calibrate(model: AuditedModel, x: torch.Tensor, batch_size: int, backward: bool = True) -> Calibration:
    """Time model calls on ``MIN_BATCH`` images of ``x`` (tiled) after a warm-up, then on a batch as
    large as the run's that a call takes about ``LARGE_CALL_S`` for (from the small call's time), and
    fit a per-call and a per-image cost (``CallCost``); with ``backward`` also forward+backward passes
    to the input (else ``backward`` is None: no check needs it, and its activations would raise the
    run's peak memory). Where a small call already takes that long (large images on a CPU) the
    per-call cost is small next to the images' and one size is timed. The calibration's ``probe``
    keeps ``x`` to time the checks' other work later. The model's pass counter is left as it was."""
    started = time.perf_counter()
    small = _tiled(x, MIN_BATCH).to(model.device)
    counted = model.counter.snapshot()
    try:
        with torch.no_grad():
            warm = _timed(model, lambda: model(small))  # warm-up: first-call allocations and kernel choices
            small_s = _timed(model, lambda: model(small), 3)
            size = max(MIN_BATCH, min(batch_size, int(MIN_BATCH * LARGE_CALL_S / max(small_s, 1e-9))))
            batch = _tiled(x, size).to(model.device)
            forward = _fit(model, lambda b: lambda: model(b), small, batch, small_s)
        slow = _backward_cost(model, x, len(batch), warm_up=warm < REPEAT_BUDGET) if backward else None
    finally:
        model.counter.forward, model.counter.backward = counted
    probe = Probe(model, x[:CALIBRATION_IMAGES].detach(), len(batch))
    return Calibration(forward, slow, len(batch), str(model.device), time.perf_counter() - started, probe)


def _tiled(x: torch.Tensor, size: int) -> torch.Tensor:
    return x.repeat(math.ceil(size / max(len(x), 1)), 1, 1, 1)[:size]


def _fit(
    model: AuditedModel,
    call: Callable[[torch.Tensor], Callable[[], object]],
    small: torch.Tensor,
    large: torch.Tensor,
    small_s: float | None = None,
) -> CallCost:
    """``CallCost`` fitted to timed calls on ``small`` and ``large`` batches (one size when they are equal,
    or when the large one does not fit in the device's memory)."""
    small_s = _timed(model, call(small), 3) if small_s is None else small_s
    if len(large) > len(small):
        try:
            return CallCost.fit(len(small), small_s, len(large), _timed(model, call(large), 3))
        except torch.OutOfMemoryError:
            pass
    return CallCost(0.0, small_s / len(small))


def _backward_cost(model: AuditedModel, x: torch.Tensor, size: int, warm_up: bool = True) -> CallCost:
    """``CallCost`` of forward+backward calls to the input, timed like ``calibrate``'s forward calls."""
    small = _tiled(x, MIN_BATCH).to(model.device)
    if warm_up:
        _timed(model, _input_gradient(model, small))
    return _fit(model, lambda b: _input_gradient(model, b), small, _tiled(x, size).to(model.device))


def with_backward(calibration: Calibration, model: AuditedModel, x: torch.Tensor, batch_size: int) -> Calibration:
    """``calibration`` with its forward+backward cost measured (at its batch size), if it has none yet."""
    if calibration.backward is not None:
        return calibration
    started, counted = time.perf_counter(), model.counter.snapshot()
    try:
        slow = _backward_cost(model, x, min(calibration.batch, max(batch_size, MIN_BATCH)))
    finally:
        model.counter.forward, model.counter.backward = counted
    return replace(calibration, backward=slow, seconds=calibration.seconds + time.perf_counter() - started)


def _input_gradient(model: AuditedModel, batch: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        xa = batch.clone().requires_grad_(True)
        torch.autograd.grad(model(xa).float().logsumexp(1).sum(), xa)

    return run


def _timed(model: AuditedModel, fn: Callable[[], object], repeats: int = 1, budget: float = REPEAT_BUDGET) -> float:
    """The fastest of up to ``repeats`` runs of ``fn`` (other load on the machine only slows a run down),
    repeated only while the runs so far took less than ``budget`` seconds (large images: one run)."""
    best, spent = math.inf, 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        _sync(model)
        took = time.perf_counter() - started
        best, spent = min(best, took), spent + took
        if spent >= budget:
            break
    return best


def _sync(model: AuditedModel) -> None:
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)


def estimate(check: Any, inputs: CostInputs, tasks: int, calibration: Calibration | None) -> CheckEstimate:
    """The plan line of ``check``: its passes (``estimate_passes``; None when it has none or it fails) and,
    with a calibration, seconds: the passes' model time plus the check's other work (``estimate_work``,
    timed by the calibration's probe). Passes without their own ``batch`` run ``min(batch_size, n)``
    images a call."""
    inputs = replace(inputs, tasks=max(tasks, 1))
    try:
        passes = check.estimate_passes(inputs)
    except Exception:  # an estimate must never stop an audit
        passes = None
    if passes is None or calibration is None:
        return CheckEstimate(check.name, inputs.n, tasks, passes, None)
    model = calibration.seconds_of(passes, max(1, min(inputs.batch_size, inputs.n)))
    work = None
    if calibration.probe is not None and hasattr(check, "estimate_work"):
        try:
            work = check.estimate_work(inputs, calibration.probe)
        except Exception:  # a probe that fails leaves the work unknown, the audit runs
            log.debug("estimate_work of %s failed", check.name, exc_info=True)
    return CheckEstimate(check.name, inputs.n, tasks, passes, model + (work.seconds if work else 0.0), model, work)


def plan_table(rows: list[CheckEstimate], calibration: Calibration | None) -> str:
    """The plan as a text table: check, images, tasks, forward and backward passes, the estimated time of
    the work besides model calls (``other``) and in all."""
    header = ("check", "images", "tasks", "forward", "backward", "other", "est. time")
    lines = [header]
    for r in rows:
        mark = "<=" if r.passes is not None and r.passes.bound else ""
        fwd = f"{mark if r.passes.forward else ''}{r.passes.forward:,}" if r.passes is not None else "?"
        bwd = f"{mark if r.passes.backward else ''}{r.passes.backward:,}" if r.passes is not None else "?"
        other = format_seconds(r.work.seconds) if r.work is not None else "?"
        lines.append((r.check, f"{r.images:,}", str(r.tasks), fwd, bwd, other, format_seconds(r.seconds)))
    known = [r.seconds for r in rows if r.seconds is not None]
    total = format_seconds(sum(known)) + (" + ?" if len(known) < len(rows) else "") if known else "?"
    lines.append(("total", "", str(sum(r.tasks for r in rows)), "", "", "", total))
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
        probes = calibration.probe.spent if calibration.probe is not None else 0.0
        text.append(
            f"calibration on {calibration.device}, {calibration.batch} images a call: forward "
            f"{fast.per_image(calibration.batch) * 1e3:.3g} ms{both} per image; est. time is the model calls at "
            "each check's call sizes plus its other work (generated images, attack bookkeeping, figures) timed on "
            f"the calibration images ({format_seconds(calibration.seconds + probes)} spent timing); '<=' marks "
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

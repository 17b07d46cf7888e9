"""``fooling-gradient``: images a model is sure of that no person would recognise.

Gradient ascent on a class's log-probability from noise, with a small L2 decay and clipping to
the valid range (Nguyen, Yosinski & Clune 2015, sec. 3.3, after Simonyan et al. 2014), finds
static that the model labels with >99.99% confidence. The regularised variant ("class
visualisation": jitter, periodic Gaussian blur, total-variation and L2 penalties; Yosinski et
al. 2015, Mordvintsev et al. 2015) instead shows what the model thinks a class looks like.
All classes are optimised together in one batch. The helpers at the top are shared with
``fooling-evolution`` and ``noise``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur

from ...errors import InvalidInputError
from ...models import AuditedModel
from ...results.schema import rate, value
from ...stats import quantile_with_ci

if TYPE_CHECKING:
    from ...checks import AuditData, CheckContext  # annotations only: methods never import checks

DEFAULT_THRESHOLDS = [0.99, 0.999, 0.9999]

# --- shared by the fooling checks and ``noise`` -------------------------------------------------


def resolve_classes(spec: Sequence[int | str], names: list[str], check: str) -> list[int]:
    """Class indices from a list of indices or names; an empty list means every class."""
    if not spec:
        return list(range(len(names)))
    out: list[int] = []
    for item in spec:
        if isinstance(item, str) and item in names:
            k = names.index(item)
        elif isinstance(item, str) and not item.lstrip("-").isdigit():
            raise InvalidInputError(f"[checks.{check}] classes: unknown class {item!r}; known: {', '.join(names)}")
        else:
            k = int(item)
            if not 0 <= k < len(names):
                raise InvalidInputError(
                    f"[checks.{check}] classes: index {k} is out of range; the model has {len(names)} classes (0-{len(names) - 1})"
                )
        if k not in out:
            out.append(k)
    return out


def check_outputs(model: AuditedModel, data: AuditData) -> None:
    """The model must score exactly the dataset's classes (class indices and names refer to both)."""
    if model.num_classes != data.num_classes:
        raise InvalidInputError(
            f"the model has {model.num_classes} outputs but dataset '{data.name}' has {data.num_classes} classes; "
            "pass the matching dataset or --num-classes"
        )


def log_probabilities(out: torch.Tensor, outputs_probabilities: bool) -> torch.Tensor:
    """Log-probabilities in float64 from logits, or from probabilities (clamped away from 0 first)."""
    out = out.double()
    if outputs_probabilities:
        return out.clamp_min(1e-300).log()
    return F.log_softmax(out, dim=1)


def warn_if_probabilities(model: AuditedModel, ctx: CheckContext, check: str) -> None:
    if model.outputs_probabilities:
        ctx.warn(f"{check}: the model outputs probabilities, not logits; using log(p) clamped at 1e-300 as the score")


def image_shape(model: AuditedModel, data: AuditData) -> tuple[int, int, int]:
    """(C, H, W) the model takes: the evaluation images are already converted to it."""
    c, h, w = data.eval.shape
    return (model.in_channels or c, h, w)


@dataclass
class Trace:
    """Per-target progress of a search: best confidence, its image and when each threshold was first met."""

    thresholds: list[float]
    best: torch.Tensor  # (K,) float64
    images: torch.Tensor  # (K, C, H, W)
    step_at: torch.Tensor  # (K, T) first step (or generation) at which confidence >= threshold, -1 if never
    evals_at: torch.Tensor  # (K, T) model evaluations spent when that happened, -1 if never

    @classmethod
    def empty(cls, k: int, shape: tuple[int, int, int], thresholds: Sequence[float]) -> Trace:
        t = len(thresholds)
        return cls(
            list(thresholds),
            torch.full((k,), -1.0, dtype=torch.float64),
            torch.zeros(k, *shape),
            torch.full((k, t), -1, dtype=torch.long),
            torch.full((k, t), -1, dtype=torch.long),
        )

    def update(
        self, idx: torch.Tensor, conf: torch.Tensor, images: torch.Tensor, step: int, evals: torch.Tensor | int
    ) -> torch.Tensor:
        """Record confidences ``conf`` of ``images`` for targets ``idx`` measured at ``step``;
        returns which of them beat the best so far (and replaced its image)."""
        idx, conf = idx.cpu(), conf.detach().double().cpu()
        evals = evals.cpu() if isinstance(evals, torch.Tensor) else torch.full_like(idx, int(evals))
        better = conf > self.best[idx]
        self.best[idx[better]] = conf[better]
        self.images[idx[better]] = images.detach().float().cpu()[better]
        for j, thr in enumerate(self.thresholds):
            new = (conf >= thr) & (self.step_at[idx, j] < 0)
            self.step_at[idx[new], j] = step
            self.evals_at[idx[new], j] = evals[new]
        return better

    def rows(self, classes: list[int], names: list[str], unit: str, **params: Any) -> list[dict[str, Any]]:
        """best_confidence, <unit>_to_confidence and evaluations_to_confidence per class, classes_fooled per threshold."""
        rows: list[dict[str, Any]] = []
        for i, k in enumerate(classes):
            cls = {"class": names[k]}
            rows.append(value("best_confidence", float(self.best[i]), 1, **cls, **params))
            for j, thr in enumerate(self.thresholds):
                reached = bool(self.step_at[i, j] >= 0)
                extra = {**cls, **params, "threshold": thr, "status": "reached" if reached else "unreached"}
                rows.append(
                    value(f"{unit}_to_confidence", float(self.step_at[i, j]) if reached else math.nan, 1, **extra)
                )
                rows.append(
                    value("evaluations_to_confidence", float(self.evals_at[i, j]) if reached else math.nan, 1, **extra)
                )
        for j, thr in enumerate(self.thresholds):
            rows.append(
                rate("classes_fooled", int((self.step_at[:, j] >= 0).sum()), len(classes), threshold=thr, **params)
            )
        for j, thr in enumerate(self.thresholds):
            rows.append(median_cost(self.costs(j), f"median_{unit}_to_confidence", threshold=thr, **params))
        return rows

    def costs(self, j: int) -> np.ndarray:
        """Per target, the step (or generation) that first reached threshold ``j``; inf if none did."""
        at = self.step_at[:, j].double().numpy()
        return np.where(at >= 0, at, np.inf)

    def grid_titles(self, classes: list[int], names: list[str]) -> list[str]:
        return [f"{names[k]}\n{_short(float(self.best[i]))}" for i, k in enumerate(classes)]


def _short(p: float) -> str:
    """A confidence with enough nines to tell 0.9999 from 0.99999."""
    if p >= 0.99:
        nines = min(8, int(-math.log10(max(1.0 - p, 1e-12))))
        return f"{p:.{nines + 1}f}"[: nines + 4]
    return f"{p:.3f}"


def median_cost(costs: np.ndarray, metric: str, **params: Any) -> dict[str, Any]:
    """The median over targets of the cost to fool one (steps or generations; inf where the budget ran out
    first, i.e. right-censored) with its distribution-free 95% interval. The order statistics below the
    budget are exact under censoring, so the median is too while fewer than half the targets are unreached;
    otherwise it is inf and ``status`` is ``"censored"``."""
    point, ci = quantile_with_ci(costs, 0.5)
    return value(metric, point, len(costs), ci, status="censored" if math.isinf(point) else "reached", **params)


def fooled_label(thr: float) -> str:
    return f"{thr * 100:g}%"


# --- fooling-gradient ---------------------------------------------------------------------------


@dataclass
class GradientVariant:
    """Settings of one gradient-ascent run (see the module docstring)."""

    name: str
    steps: int
    step_size: float  # L2 length of each normalised gradient step, per unit of sqrt(pixels)
    l2_decay: float  # pull towards the data's mean pixel per step
    init: str  # "uniform" noise in [0, 1] or "mean" (the data's mean pixel plus small noise)
    jitter: int = 0  # random shift in pixels before each gradient evaluation
    blur_every: int = 0  # blur every k steps (0: never)
    blur_sigma: float = 0.5
    tv_weight: float = 0.0  # total-variation penalty weight


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation per image (mean absolute difference of neighbours), shape (N,)."""
    dh = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().flatten(1).mean(1)
    dw = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().flatten(1).mean(1)
    return dh + dw


def gradient_fooling(
    model: AuditedModel,
    classes: list[int],
    shape: tuple[int, int, int],
    variant: GradientVariant,
    thresholds: Sequence[float],
    stop_at: float,
    generator: torch.Generator,
    centre: torch.Tensor | None = None,
) -> Trace:
    """Gradient ascent on log p(class | x) for every class at once; returns each class's trace.

    Steps have L2 length ``step_size * sqrt(pixels)`` along the normalised gradient; a class stops
    once its confidence reaches ``stop_at`` (< 1). ``centre`` (C,) is the mean pixel of the data
    (default 0.5): the L2 decay pulls towards it and the "mean" start is near it. Confidence is always measured on the image
    itself (without jitter), and counted as a model evaluation.
    """
    device = model.device
    k = len(classes)
    target = torch.tensor(classes, device=device)
    centre = (torch.full((shape[0],), 0.5) if centre is None else centre).to(device).view(1, -1, 1, 1)
    if variant.init == "uniform":
        x = torch.rand(k, *shape, generator=generator, device=device)
    else:
        x = (centre + 0.05 * torch.randn(k, *shape, generator=generator, device=device)).clamp(0, 1)
    trace = Trace.empty(k, shape, thresholds)
    evals = torch.zeros(k, dtype=torch.long)
    active = torch.arange(k, device=device)
    step_len = variant.step_size * math.sqrt(x[0].numel())
    for step in range(variant.steps + 1):
        xa = x[active].clone().requires_grad_(step < variant.steps)
        with torch.set_grad_enabled(step < variant.steps):
            shifted = _jitter(xa, variant.jitter, generator) if variant.jitter else xa
            logp_all = log_probabilities(model(shifted), model.outputs_probabilities)
            logp = logp_all.gather(1, target[active, None]).squeeze(1)
        evals[active.cpu()] += 1
        if variant.jitter:
            with torch.no_grad():
                clean = (
                    log_probabilities(model(xa.detach()), model.outputs_probabilities)
                    .gather(1, target[active, None])
                    .squeeze(1)
                )
            evals[active.cpu()] += 1
        else:
            clean = logp.detach()
        conf = clean.exp()
        trace.update(active, conf, xa, step, evals[active.cpu()])
        if step == variant.steps:
            break
        objective = logp.sum() - variant.tv_weight * total_variation(xa).sum() * xa[0].numel()
        (grad,) = torch.autograd.grad(objective, xa)
        with torch.no_grad():
            norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            xn = xa + step_len * grad / norm
            xn = xn - variant.l2_decay * (xn - centre)
            if variant.blur_every and (step + 1) % variant.blur_every == 0:
                xn = _blur(xn, variant.blur_sigma)
            x[active] = xn.clamp(0, 1)
        keep = conf < stop_at if stop_at < 1.0 else torch.ones_like(conf, dtype=torch.bool)
        active = active[keep.to(active.device)]
        if len(active) == 0:
            break
    return trace


def _jitter(x: torch.Tensor, pixels: int, generator: torch.Generator) -> torch.Tensor:
    dy, dx = (int(v) for v in torch.randint(-pixels, pixels + 1, (2,), generator=generator, device=generator.device))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    size = 2 * math.ceil(2 * sigma) + 1
    return gaussian_blur(x, [size, size], [sigma, sigma])

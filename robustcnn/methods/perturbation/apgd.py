"""Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks", Algorithm 1) for L-inf and L2 balls.

Step size starts at 2*eps and is halved at checkpoints when the loss stalls or oscillates;
momentum 0.75; restarts from the best point after a halving. Every iterate is checked for
misclassification, and an input leaves the batch as soon as it is broken.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ...seeding import SampleStreams
from .geometry import into_box, normalized_step, per_sample, random_in_ball
from .losses import LOSSES

Model = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class AttackRun:
    """What one fixed-epsilon attack returns: the last or adversarial point and a success flag."""

    adversarial: torch.Tensor
    success: torch.Tensor


def checkpoints(steps: int) -> list[int]:
    """Iterations at which APGD may halve its step: the first window is 22% of the budget,
    each next one 3% shorter, never below 6% (p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)),
    in whole iterations."""
    window, shrink, floor = max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    marks, at = [], window
    while at < steps:
        marks.append(at)
        window = max(window - shrink, floor)
        at += window
    return marks


def loss_and_grad(
    model: Model, x: torch.Tensor, y: torch.Tensor, loss: Callable, target: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample loss, logits and input gradient; a model without a gradient path gives zeros."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        values = loss(logits, y) if target is None else loss(logits, y, target)
        if values.requires_grad:
            (grad,) = torch.autograd.grad(values.sum(), x, allow_unused=True)
        else:
            grad = None
    grad = torch.zeros_like(x) if grad is None else torch.nan_to_num(grad.detach(), nan=0.0, posinf=0.0, neginf=0.0)
    return values.detach(), logits.detach(), grad


def apgd(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: torch.Tensor | float,
    norm: str = "linf",
    loss: str = "ce",
    steps: int = 100,
    generator: torch.Generator | SampleStreams | None = None,
    random_start: bool = True,
    rho: float = 0.75,
    momentum: float = 0.75,
    target: torch.Tensor | None = None,
) -> AttackRun:
    """APGD with cross-entropy (``"ce"``), DLR (``"dlr"``) or targeted DLR (``"dlr-t"``, needs
    ``target`` classes) loss; ``eps`` per sample or scalar. Success is any misclassification.
    The random start comes from ``generator``: per-input streams, or one generator for the batch."""
    n = len(x)
    eps = torch.as_tensor(eps, dtype=x.dtype, device=x.device).expand(n).clone() if n else x.new_zeros(0)
    loss_fn = LOSSES[loss]
    out, success = x.clone(), torch.zeros(n, dtype=torch.bool, device=x.device)
    if n == 0 or steps < 1:
        return AttackRun(out, success)
    gen = generator or torch.Generator(device=x.device.type).manual_seed(0)
    idx = torch.arange(n, device=x.device)
    x0, y0, e0 = x, y, eps
    t0 = target if target is not None else y

    def harvest(points: torch.Tensor, logits: torch.Tensor, y_active: torch.Tensor) -> torch.Tensor:
        broke = logits.argmax(1) != y_active
        out[idx[broke]] = points[broke]
        success[idx[broke]] = True
        return ~broke

    cur = random_in_ball(x0, e0, norm, gen) if random_start else x0.clone()
    cur_loss, logits, grad = loss_and_grad(model, cur, y0, loss_fn, target)
    keep = harvest(cur, logits, y0)
    s = {
        "x": x0,
        "y": y0,
        "t": t0,
        "eps": e0,
        "cur": cur,
        "prev": cur.clone(),
        "loss": cur_loss,
        "grad": grad,
        "best": cur.clone(),
        "best_loss": cur_loss.clone(),
        "best_grad": grad.clone(),
        "step": 2 * e0,
        "ups": torch.zeros_like(e0),
        "ck_loss": cur_loss.clone(),
        "reduced": torch.zeros_like(e0, dtype=torch.bool),
    }
    marks, last_mark = checkpoints(steps), 0
    for k in range(steps + 1):
        if not keep.all():
            idx = idx[keep]
            s = {name: t[keep] for name, t in s.items()}
        if len(idx) == 0 or k == steps:
            break
        z = into_box(
            s["x"], s["cur"] + per_sample(s["step"], s["cur"]) * normalized_step(s["grad"], norm), s["eps"], norm
        )
        if k > 0:
            z = into_box(
                s["x"], s["cur"] + momentum * (z - s["cur"]) + (1 - momentum) * (s["cur"] - s["prev"]), s["eps"], norm
            )
        new_loss, logits, new_grad = loss_and_grad(model, z, s["y"], loss_fn, s["t"] if target is not None else None)
        keep = harvest(z, logits, s["y"])
        s["ups"] += (new_loss > s["loss"]).to(s["ups"].dtype)
        better = new_loss > s["best_loss"]
        s["best"][better], s["best_loss"][better], s["best_grad"][better] = (
            z[better],
            new_loss[better],
            new_grad[better],
        )
        s["prev"], s["cur"], s["loss"], s["grad"] = s["cur"], z, new_loss, new_grad
        if k + 1 in marks:
            stalled = (~s["reduced"]) & (s["best_loss"] <= s["ck_loss"])
            reduce = (s["ups"] <= rho * (k + 1 - last_mark)) | stalled
            s["step"] = torch.where(reduce, s["step"] / 2, s["step"])
            s["cur"][reduce], s["grad"][reduce] = s["best"][reduce], s["best_grad"][reduce]
            s["reduced"], s["ck_loss"], s["ups"] = reduce, s["best_loss"].clone(), torch.zeros_like(s["ups"])
            last_mark = k + 1
    if len(idx):
        out[idx] = s["best"]
    return AttackRun(out, success)

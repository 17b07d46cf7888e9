"""Square attack (Andriushchenko, Croce, Flammarion & Hein 2020, "Square Attack: a
query-efficient black-box adversarial attack via random search"), L-inf and L2.

Score-based: it reads only the model's outputs (the margin loss on logits), never a gradient,
so masked or shattered gradients do not stop it. Random search over square-shaped updates
whose side shrinks on the paper's schedule; a candidate is kept only if it lowers the margin.
Every random draw comes from the input's own stream (``SampleStreams``), so an input's search
does not depend on which other inputs share its batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ...seeding import SampleStreams
from .apgd import AttackRun
from .geometry import lp_norm, per_sample, project
from .losses import margin

Model = Callable[[torch.Tensor], torch.Tensor]

_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def square_fraction(p_init: float, it: int, queries: int) -> float:
    """Fraction of pixels a square covers at iteration ``it``: ``p_init`` halved at the paper's
    iterations (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 of 10,000), rescaled to ``queries``."""
    scaled = int(it / max(queries, 1) * 10000)
    return p_init / 2 ** sum(scaled > h for h in _HALVINGS)


def _windows(
    h: int, w: int, side: int, gen: SampleStreams, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random square windows, one per image: a (N, 1, H, W) mask and the in-window row/column offsets."""
    top = gen.integers(0, h - side + 1, ())
    left = gen.integers(0, w - side + 1, ())
    rows = torch.arange(h, device=device)[None, :] - top[:, None]
    cols = torch.arange(w, device=device)[None, :] - left[:, None]
    inside = ((rows >= 0) & (rows < side))[:, :, None] & ((cols >= 0) & (cols < side))[:, None, :]
    return inside[:, None].to(torch.float32), rows.clamp(0, side - 1), cols.clamp(0, side - 1)


def _side(p: float, h: int, w: int, minimum: int) -> int:
    return int(min(max(round(math.sqrt(p * h * w)), minimum), h, w))


def _bump(side: int) -> torch.Tensor:
    """The L2 update pattern: two halves of opposite sign, each a stack of concentric squares
    weighted 1/(ring+1)^2 (a pseudo-Gaussian bump), normalised to unit L2 norm."""
    pattern = torch.zeros(side, side)
    halves = [(0, side // 2, 1.0), (side // 2, side, -1.0)] if side > 1 else [(0, 1, 1.0)]
    for start, stop, sign in halves:
        rows = torch.arange(stop - start, dtype=torch.float32)
        cols = torch.arange(side, dtype=torch.float32)
        ring = torch.maximum((rows[:, None] - (stop - start - 1) / 2).abs(), (cols[None, :] - (side - 1) / 2).abs())
        pattern[start:stop] = sign / (ring.floor() + 1) ** 2
    return pattern / pattern.norm()


def _place(patterns: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Put one (side, side) pattern per image (N, side, side) into its window: (N, 1, H, W)."""
    n = len(patterns)
    picked = patterns[torch.arange(n, device=patterns.device)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return picked[:, None] * mask


def _signs(gen: SampleStreams, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    return gen.integers(0, 2, shape).to(like.dtype) * 2 - 1


def _linf_init(x: torch.Tensor, eps: torch.Tensor, gen: SampleStreams) -> torch.Tensor:
    _, c, _, w = x.shape
    stripes = _signs(gen, (c, 1, w), x)
    return (x + per_sample(eps, x) * stripes).clamp(0, 1)


def _l2_init(x: torch.Tensor, eps: torch.Tensor, gen: SampleStreams) -> torch.Tensor:
    _, c, h, w = x.shape
    block = max(1, min(h, w) // 5)
    tile = _bump(block)
    reps_h, reps_w = math.ceil(h / block), math.ceil(w / block)
    signs = _signs(gen, (c, reps_h, reps_w), x)
    grid = signs.repeat_interleave(block, 2).repeat_interleave(block, 3)[:, :, :h, :w]
    delta = grid * tile.to(x).repeat(reps_h, reps_w)[:h, :w]
    delta = delta / per_sample(lp_norm(delta, "l2").clamp_min(1e-12), delta) * per_sample(eps, x)
    return (x + delta).clamp(0, 1)


def _linf_candidate(
    x: torch.Tensor, best: torch.Tensor, eps: torch.Tensor, side: int, gen: SampleStreams
) -> torch.Tensor:
    _, c, h, w = x.shape
    mask, _, _ = _windows(h, w, side, gen, x.device)
    signs = _signs(gen, (c, 1, 1), x)
    current = ((best - x) * mask).sum(dim=(2, 3), keepdim=True) / mask.sum(dim=(2, 3), keepdim=True)
    same = (torch.sign(current) == signs).all(dim=1, keepdim=True)
    signs = torch.where(same, -signs, signs)
    delta = torch.where(mask.bool(), per_sample(eps, x) * signs, best - x)
    return (x + delta).clamp(0, 1)


def _l2_candidate(
    x: torch.Tensor, best: torch.Tensor, eps: torch.Tensor, side: int, gen: SampleStreams
) -> torch.Tensor:
    """Move the perturbation mass of a second window (and any unused budget) into a new bump
    in the first window; the total L2 norm stays at most ``eps``."""
    _, c, h, w = x.shape
    delta = best - x
    first, rows, cols = _windows(h, w, side, gen, x.device)
    second, _, _ = _windows(h, w, side, gen, x.device)
    union = torch.maximum(first, second)
    unused = (per_sample(eps, x) ** 2 - per_sample(lp_norm(delta, "l2"), x) ** 2).clamp_min(0) / c
    mass = ((delta * union) ** 2).sum(dim=(2, 3), keepdim=True) + unused
    bump = _bump(side).to(x)
    patterns = torch.where(gen.uniform((1, 1)) < 0.5, bump, bump.T)
    placed = _place(patterns, rows, cols, first)
    signs = _signs(gen, (c, 1, 1), x)
    inside = delta * first
    scale = inside.pow(2).sum(dim=(2, 3), keepdim=True).sqrt().clamp_min(mass.sqrt() * 0.5)
    inside = inside + signs * placed * scale
    inside = inside / inside.pow(2).sum(dim=(2, 3), keepdim=True).sqrt().clamp_min(1e-12) * mass.sqrt()
    delta = delta * (1 - union) + inside
    return (x + project(delta, eps, "l2")).clamp(0, 1)


def square_attack(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: torch.Tensor | float,
    norm: str = "linf",
    queries: int = 1000,
    p_init: float = 0.8,
    generator: SampleStreams | torch.Generator | None = None,
) -> AttackRun:
    """Untargeted Square attack with at most ``queries`` model calls per image; ``eps`` per sample or scalar.

    ``generator``: per-input streams, or a torch generator (``None``: seed 0) that draws their keys."""
    n = len(x)
    eps = torch.as_tensor(eps, dtype=x.dtype, device=x.device).expand(n).clone() if n else x.new_zeros(0)
    out, success = x.clone(), torch.zeros(n, dtype=torch.bool, device=x.device)
    if n == 0 or queries < 1:
        return AttackRun(out, success)
    gen = generator if isinstance(generator, SampleStreams) else _streams(n, generator)
    gen = gen.to(x.device)
    _, _, h, w = x.shape
    init, candidate, minimum = (_linf_init, _linf_candidate, 1) if norm == "linf" else (_l2_init, _l2_candidate, 3)
    idx = torch.arange(n, device=x.device)
    best = init(x, eps, gen)
    with torch.no_grad():
        best_margin = margin(model(best), y)
    xs, ys, es = x, y, eps
    for it in range(queries):
        broke = best_margin < 0
        out[idx[broke]], success[idx[broke]] = best[broke], True
        keep = ~broke
        idx, xs, ys, es, best, best_margin = idx[keep], xs[keep], ys[keep], es[keep], best[keep], best_margin[keep]
        gen = gen.subset(keep)
        if len(idx) == 0 or it == queries - 1:
            break
        side = _side(square_fraction(p_init, it, queries), h, w, minimum)
        cand = candidate(xs, best, es, side, gen)
        with torch.no_grad():
            cand_margin = margin(model(cand), ys)
        improved = cand_margin < best_margin
        best = torch.where(per_sample(improved, best), cand, best)
        best_margin = torch.where(improved, cand_margin, best_margin)
    if len(idx):
        out[idx] = best
    return AttackRun(out, success)


def _streams(n: int, generator: torch.Generator | None) -> SampleStreams:
    gen = generator or torch.Generator().manual_seed(0)
    return SampleStreams(torch.randint(-(2**63), 2**63 - 1, (n,), generator=gen, device=gen.device))

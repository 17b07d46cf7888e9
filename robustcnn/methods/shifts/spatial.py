"""Translations and rotations: translation jaggedness (Azulay & Weiss 2019) and the worst-of-grid rotation and
translation attack (Engstrom et al. 2019), used by the ``spatial`` check."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ...models import AuditedModel

if TYPE_CHECKING:
    from ...checks import CheckContext  # annotations only: methods never import checks


def rotate_translate(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Rotate each image by ``params[:, 0]`` degrees about its centre, then
    translate it by ``params[:, 1:]`` = (dx, dy) pixels; bilinear, zero (black) fill."""
    _, _, h, w = x.shape
    p = params.to(device=x.device, dtype=x.dtype)
    a = torch.deg2rad(p[:, 0])
    cos, sin = torch.cos(a), torch.sin(a)
    # output pixel u (centred, pixel units) samples source R(-a) (u - t); normalise by half the size
    sx, sy = w / 2, h / 2
    theta = torch.stack(
        [
            torch.stack([cos, sin * sy / sx, -(cos * p[:, 1] + sin * p[:, 2]) / sx], dim=1),
            torch.stack([-sin * sx / sy, cos, (sin * p[:, 1] - cos * p[:, 2]) / sy], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def diagonal_shift(x: torch.Tensor, shift: int) -> torch.Tensor:
    """Translate images by ``(shift, shift)`` whole pixels on a zero canvas."""
    h, w = x.shape[-2:]
    m = abs(shift)
    if m == 0:
        return x
    canvas = F.pad(x, (m, m, m, m))
    return canvas[..., m - shift : m - shift + h, m - shift : m - shift + w]


def worst_of(
    model: AuditedModel,
    x: torch.Tensor,
    y: torch.Tensor,
    params: torch.Tensor,
    active: torch.Tensor,
    ctx: CheckContext,
    round_size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Search each active image's transforms ``params`` (n, T, 3) in order until one misclassifies it.

    Rounds evaluate the next k transforms of every image still unbroken (k grows as images
    break, so a round is about ``round_size`` images); the model sees ``ctx.batch_size`` at a
    time. Returns broken (n,), index of the first breaking transform (n,; -1 if none),
    transforms searched per image (n,: up to and including the first breaking one, all T if
    none; the rounds may evaluate a few more, which depends on the batch), and the prediction
    under the breaking transform (n,).
    """
    n, t = params.shape[:2]
    broken = torch.zeros(n, dtype=torch.bool)
    first = torch.full((n,), -1, dtype=torch.long)
    evals = torch.zeros(n, dtype=torch.long)
    wrong_pred = torch.full((n,), -1, dtype=torch.long)
    alive = active.clone()
    pos = 0
    while pos < t and bool(alive.any()):
        idx = torch.nonzero(alive).squeeze(1)
        k = min(max(1, round_size // len(idx)), t - pos)
        pairs_img = idx.repeat_interleave(k)
        pairs_par = params[idx, pos : pos + k].reshape(-1, 3)
        preds = []
        for s in range(0, len(pairs_img), ctx.batch_size):
            chunk = pairs_img[s : s + ctx.batch_size]
            images = rotate_translate(x[chunk].to(ctx.device), pairs_par[s : s + ctx.batch_size])
            preds.append(model.logits(images, ctx.batch_size).argmax(dim=1))
        pred = torch.cat(preds).view(len(idx), k)
        wrong = pred != y[idx, None]
        hit = wrong.any(dim=1)
        at = wrong.float().argmax(dim=1)
        evals[idx] += torch.where(hit, at + 1, k)
        newly = idx[hit]
        broken[newly] = True
        first[newly] = pos + at[hit]
        wrong_pred[newly] = pred[hit].gather(1, at[hit, None]).squeeze(1)
        alive[newly] = False
        pos += k
    return broken, first, evals, wrong_pred

"""Training a universal targeted patch by expectation over transformations (Brown et al. 2017).

A patch is optimised with Adam to maximise the target class's mean log-probability over
training images, each batch under fresh random placements (location, rotation, scale), and
projected back to [0, 1] pixels after every step. ``train_area_patches`` trains one such patch
per evaluated area (the default of the check: each is stored at its own resolution and only
has to work at its own size) or one patch for all areas (Brown et al.'s multi-scale patch).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import torch

from ...models import AuditedModel
from .geometry import apply_patch, patch_resolution, sample_placements, shape_mask


@dataclass
class PatchTraining:
    """How a patch is trained: areas drawn per image (times a scale jitter), rotation range, schedule."""

    areas: list[float]
    shape: str
    max_rotation: float = 22.5
    scale_jitter: float = 0.15
    epochs: int = 8
    batch_size: int = 64
    lr: float = 0.05


@dataclass
class TrainedPatch:
    patch: torch.Tensor
    mask: torch.Tensor
    losses: list[float] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0


def patch_size(setup: PatchTraining, height: int, width: int) -> int:
    """Stored patch resolution: the largest size it is rendered at during training."""
    return patch_resolution(max(setup.areas) * (1 + setup.scale_jitter), setup.shape, height, width)


def target_log_prob(model: AuditedModel, x: torch.Tensor, target: int) -> torch.Tensor:
    """Per-image log-probability of ``target``; safe for models that output probabilities."""
    out = model(x)
    if model.outputs_probabilities:
        return out[:, target].clamp_min(1e-12).log()
    return out.log_softmax(dim=1)[:, target]


def train_patch(
    model: AuditedModel, images: torch.Tensor, target: int, setup: PatchTraining, gen: torch.Generator
) -> TrainedPatch:
    """Optimise one patch for ``target`` on ``images`` (M, C, H, W) in [0, 1], starting from uniform noise;
    ``gen`` is a CPU generator."""
    device = model.device
    _, c, h, w = images.shape
    size = patch_size(setup, h, w)
    mask = shape_mask(setup.shape, size, device)
    patch = torch.rand(1, c, size, size, generator=gen).to(device).requires_grad_(True)
    optimiser = torch.optim.Adam([patch], lr=setup.lr)
    areas = torch.tensor(setup.areas, dtype=torch.float32)
    result = TrainedPatch(patch.detach(), mask)
    started = time.perf_counter()
    for _ in range(setup.epochs):
        order = torch.randperm(len(images), generator=gen)
        epoch_loss = 0.0
        for start in range(0, len(images), setup.batch_size):
            xb = images[order[start : start + setup.batch_size]].to(device)
            n = len(xb)
            pick = areas[torch.randint(len(areas), (n,), generator=gen)]
            jitter = 1 + (torch.rand(n, generator=gen) * 2 - 1) * setup.scale_jitter
            pl = sample_placements(pick * jitter, setup.shape, h, w, setup.max_rotation, gen).to(device)
            loss = -target_log_prob(model, apply_patch(xb, patch, mask, pl), target).mean()
            (grad,) = torch.autograd.grad(loss, patch)
            optimiser.zero_grad(set_to_none=True)
            patch.grad = grad
            optimiser.step()
            with torch.no_grad():
                patch.clamp_(0, 1)
            epoch_loss += float(loss.detach()) * n
            result.steps += 1
        result.losses.append(epoch_loss / len(images))
    result.patch = patch.detach()
    result.seconds = time.perf_counter() - started
    return result


def train_area_patches(
    model: AuditedModel,
    images: torch.Tensor,
    target: int,
    setup: PatchTraining,
    gen: torch.Generator,
    per_area: bool = True,
) -> dict[float, TrainedPatch]:
    """The patch to evaluate at each of ``setup.areas``: one trained at that area alone (``per_area``),
    or one patch trained over all areas and shared by them."""
    if not per_area:
        shared = train_patch(model, images, target, setup, gen)
        return dict.fromkeys(setup.areas, shared)
    return {a: train_patch(model, images, target, replace(setup, areas=[a]), gen) for a in setup.areas}

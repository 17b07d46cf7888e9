"""Where a patch lands: random placements (location, rotation, scale) and their batched rendering.

Placements follow the expectation-over-transformation recipe of Brown et al. (2017),
"Adversarial Patch": each image gets its own random position, rotation and size, and the
patch is pasted with ``affine_grid``/``grid_sample`` so the whole batch is one differentiable op.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SHAPES = ("square", "circle")


@dataclass
class Placements:
    """Per-image placement: patch side (pixels), rotation (radians), centre offset (pixels, x/y from the image centre)."""

    side: torch.Tensor
    angle: torch.Tensor
    centre: torch.Tensor

    def __len__(self) -> int:
        return len(self.side)

    def to(self, device: torch.device | str) -> Placements:
        return Placements(self.side.to(device), self.angle.to(device), self.centre.to(device))


def patch_side(area: float | torch.Tensor, shape: str, height: int, width: int) -> float | torch.Tensor:
    """Side (square) or diameter (circle) in pixels of a patch covering ``area`` of an ``height x width`` image."""
    pixels = area * height * width
    if shape == "circle":
        pixels = pixels * 4 / math.pi
    return pixels**0.5


def patch_resolution(max_area: float, shape: str, height: int, width: int) -> int:
    """Pixels per side at which the patch is stored: its largest rendered size, so it is never upsampled."""
    return max(2, math.ceil(patch_side(max_area, shape, height, width)))


def shape_mask(shape: str, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """A (1, 1, size, size) mask of the patch shape: all ones (square) or the inscribed disc (circle)."""
    if shape == "square":
        return torch.ones(1, 1, size, size, device=device)
    coords = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size * 2 - 1
    r2 = coords.view(-1, 1) ** 2 + coords.view(1, -1) ** 2
    return (r2 <= 1).float().view(1, 1, size, size)


def sample_placements(
    areas: torch.Tensor, shape: str, height: int, width: int, max_rotation: float, gen: torch.Generator
) -> Placements:
    """One placement per entry of ``areas``: uniform rotation in +-``max_rotation`` degrees and a uniform
    centre among those that keep the whole (rotated) patch inside the image; a patch too large to fit
    is centred. Drawn on the CPU with ``gen`` (a CPU generator) so results do not depend on the device."""
    n = len(areas)
    side = patch_side(areas.float().cpu(), shape, height, width)
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(max_rotation)
    half = side / 2
    if shape == "square":
        half = half * (angle.cos().abs() + angle.sin().abs())
    room = torch.stack([(width / 2 - half).clamp(min=0), (height / 2 - half).clamp(min=0)], dim=1)
    centre = (torch.rand(n, 2, generator=gen) * 2 - 1) * room
    return Placements(side, angle, centre)


def placement_theta(pl: Placements, height: int, width: int) -> torch.Tensor:
    """(N, 2, 3) affine matrices mapping normalised image coordinates to normalised patch coordinates."""
    cos, sin = pl.angle.cos(), pl.angle.sin()
    scale = 2 / pl.side
    cx, cy = pl.centre[:, 0], pl.centre[:, 1]
    row_x = torch.stack([cos * width / 2, sin * height / 2, -(cos * cx + sin * cy)], dim=1) * scale[:, None]
    row_y = torch.stack([-sin * width / 2, cos * height / 2, -(-sin * cx + cos * cy)], dim=1) * scale[:, None]
    return torch.stack([row_x, row_y], dim=1)


def apply_patch(x: torch.Tensor, patch: torch.Tensor, mask: torch.Tensor, pl: Placements) -> torch.Tensor:
    """Paste ``patch`` (1 or N, C, s, s) through ``mask`` (1, 1, s, s) onto images ``x`` (N, C, H, W) at ``pl``.

    Patch and mask are resampled together (premultiplied alpha), so edges blend instead of darkening.
    """
    n, c, h, w = x.shape
    theta = placement_theta(pl, h, w).to(x.device, x.dtype)
    layers = torch.cat([patch * mask, mask.expand(patch.shape[0], -1, -1, -1)], dim=1).expand(n, -1, -1, -1)
    grid = F.affine_grid(theta, [n, c + 1, h, w], align_corners=False)
    rendered = F.grid_sample(layers, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    alpha = rendered[:, c:]
    return (x * (1 - alpha) + rendered[:, :c]).clamp(0, 1)

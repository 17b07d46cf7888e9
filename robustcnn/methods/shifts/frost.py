"""Procedural frost textures for the ``frost`` corruption.

The reference blends images with crops of six photographs of frost on glass (five are used),
which cannot ship here. These are drawn instead, with fixed seeds so every run sees the same
five textures: dendritic ice crystals (straight strokes with side branches at +-60 degrees,
the hexagonal habit of ice), over a low-frequency fractal haze and a fine grain, tinted
slightly blue. A texture's side is four times the image's (rounded up to a power of two), so a
crop shows a few crystals, as the reference's crops of the down-scaled photographs do.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

TEXTURES = 5
TINT = (0.86, 0.93, 1.0)


def _segments(rng: np.random.Generator, side: int) -> np.ndarray:
    """(M, 5) segments ``x, y, angle, length, intensity`` of crystal trunks and two levels of branches."""
    count = max(4, int(30 * (side / 128) ** 2))
    trunks = np.column_stack(
        [
            rng.uniform(0, side, count),
            rng.uniform(0, side, count),
            rng.uniform(0, 2 * np.pi, count),
            side * rng.uniform(0.06, 0.25, count),
            rng.uniform(0.5, 1.0, count),
        ]
    )
    levels = [trunks]
    for _ in range(2):
        parents = levels[-1]
        kids = []
        for x, y, angle, length, strength in parents:
            spacing = max(2.0, length / 5)
            for t in np.arange(spacing, length, spacing):
                for sign in (-1, 1):
                    if rng.random() < 0.8:
                        kids.append(
                            (
                                x + t * math.cos(angle),
                                y + t * math.sin(angle),
                                angle + sign * np.pi / 3,
                                (length - t) * rng.uniform(0.25, 0.5),
                                strength * 0.8,
                            )
                        )
        if not kids:
            break
        levels.append(np.array(kids))
    return np.concatenate(levels)


def _render(segments: np.ndarray, side: int) -> np.ndarray:
    """Splat points every half pixel along each segment (bilinear, wrapping) into a (side, side) map."""
    steps = np.maximum(1, np.ceil(segments[:, 3] * 2)).astype(int)
    seg = np.repeat(np.arange(len(segments)), steps)
    t = (np.arange(steps.sum()) - np.repeat(np.cumsum(steps) - steps, steps)) * 0.5
    x = segments[seg, 0] + t * np.cos(segments[seg, 2])
    y = segments[seg, 1] + t * np.sin(segments[seg, 2])
    w = segments[seg, 4] * 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    canvas = np.zeros(side * side)
    for dy, dx, weight in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        idx = ((y0 + dy).astype(int) % side) * side + (x0 + dx).astype(int) % side
        canvas += np.bincount(idx, weights=w * weight, minlength=side * side)
    return canvas.reshape(side, side)


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with wrap-around, via the FFT (the textures tile)."""
    side = a.shape[0]
    f = np.fft.fftfreq(side)
    gain = np.exp(-2 * (np.pi * sigma) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    return np.real(np.fft.ifft2(np.fft.fft2(a) * gain))


def _texture(seed: int, side: int) -> np.ndarray:
    rng = np.random.default_rng(1000 + seed)
    lines = 1 - np.exp(-2.5 * _blur(_render(_segments(rng, side), side), 0.6))
    haze = _blur(rng.standard_normal((side, side)), side / 12)
    haze = (haze - haze.min()) / (haze.max() - haze.min())
    grain = _blur(rng.random((side, side)), 0.8)
    grain = (grain - grain.min()) / (grain.max() - grain.min())
    grey = np.clip(0.08 + 0.6 * lines + 0.3 * haze * (0.4 + 0.6 * lines) + 0.12 * grain, 0, 1)
    return np.stack([grey * t for t in TINT])


@lru_cache(maxsize=4)
def _bank(side: int) -> torch.Tensor:
    return torch.from_numpy(np.stack([_texture(k, side) for k in range(TEXTURES)])).float()


def texture_side(h: int, w: int) -> int:
    """Side of the textures for (h, w) images: 4 max(h, w) rounded up to a power of two, at least 64."""
    return max(64, 1 << math.ceil(math.log2(4 * max(h, w))))


def frost_textures(
    h: int, w: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The five (3, S, S) RGB frost textures in [0, 1] for (h, w) images, on ``device``."""
    return _bank(texture_side(h, w)).to(device=device, dtype=dtype)

"""Seeded random draws on the images' device (a ``generator=None`` uses torch's global RNG)."""

from __future__ import annotations

import torch


def uniform(
    shape: tuple[int, ...], gen: torch.Generator | None, like: torch.Tensor, low: float = 0.0, high: float = 1.0
) -> torch.Tensor:
    return torch.rand(shape, generator=gen, device=like.device, dtype=like.dtype).mul_(high - low).add_(low)


def normal(
    shape: tuple[int, ...], gen: torch.Generator | None, like: torch.Tensor, loc: float = 0.0, scale: float = 1.0
) -> torch.Tensor:
    return torch.randn(shape, generator=gen, device=like.device, dtype=like.dtype).mul_(scale).add_(loc)


def integers(
    low: int, high: int, shape: tuple[int, ...], gen: torch.Generator | None, like: torch.Tensor
) -> torch.Tensor:
    """Integers in ``[low, high)``, as ``np.random.randint``."""
    return torch.randint(low, high, shape, generator=gen, device=like.device)

"""Seeded random draws on the images' device.

``gen`` is a ``torch.Generator`` (one stream for the batch; ``None`` uses torch's global RNG)
or ``SampleStreams`` (one stream per image, so an image's corruption does not depend on the
other images of its batch). Every draw's first dimension is the image.
"""

from __future__ import annotations

import torch

from ...seeding import SampleStreams

Source = torch.Generator | SampleStreams | None


def _streams(gen: Source, shape: tuple[int, ...], like: torch.Tensor) -> SampleStreams | None:
    if not isinstance(gen, SampleStreams):
        return None
    if not shape or shape[0] != len(gen):
        raise ValueError(f"a per-sample draw of shape {shape} needs {len(gen)} rows, one per image")
    return gen if gen.device == like.device else gen.to(like.device)


def uniform(
    shape: tuple[int, ...], gen: Source, like: torch.Tensor, low: float = 0.0, high: float = 1.0
) -> torch.Tensor:
    streams = _streams(gen, shape, like)
    if streams is not None:
        return streams.uniform(shape[1:], low, high, like.dtype)
    return torch.rand(shape, generator=gen, device=like.device, dtype=like.dtype).mul_(high - low).add_(low)


def normal(
    shape: tuple[int, ...], gen: Source, like: torch.Tensor, loc: float = 0.0, scale: float = 1.0
) -> torch.Tensor:
    streams = _streams(gen, shape, like)
    if streams is not None:
        return streams.normal(shape[1:], loc, scale, like.dtype)
    return torch.randn(shape, generator=gen, device=like.device, dtype=like.dtype).mul_(scale).add_(loc)


def integers(low: int, high: int, shape: tuple[int, ...], gen: Source, like: torch.Tensor) -> torch.Tensor:
    """Integers in ``[low, high)``, as ``np.random.randint``."""
    streams = _streams(gen, shape, like)
    if streams is not None:
        return streams.integers(low, high, shape[1:])
    return torch.randint(low, high, shape, generator=gen, device=like.device)


def poisson(rates: torch.Tensor, gen: Source) -> torch.Tensor:
    """Poisson counts with the given rates (first dimension: images)."""
    streams = _streams(gen, tuple(rates.shape), rates)
    if streams is None:
        return torch.poisson(rates, generator=gen)
    return torch.stack([torch.poisson(r, generator=g) for r, g in zip(rates, streams.generators(), strict=False)])

"""Norm balls in pixel space: norms, projections and the [0, 1] box, batched per sample."""

from __future__ import annotations

import torch

from ...seeding import SampleStreams

NORMS = ("linf", "l2")


def lp_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample norm of a batch of perturbations, shape (N,)."""
    flat = delta.flatten(1)
    if norm == "linf":
        return flat.abs().amax(dim=1) if flat.shape[1] else flat.new_zeros(len(flat))
    if norm == "l2":
        return flat.norm(dim=1)
    raise ValueError(f"unknown norm {norm!r}")


def per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape (N,) to (N, 1, 1, 1) so it broadcasts against images."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def project(delta: torch.Tensor, eps: torch.Tensor, norm: str) -> torch.Tensor:
    """Project each perturbation onto its own ball of radius ``eps`` (N,)."""
    radius = per_sample(eps, delta)
    if norm == "linf":
        return torch.maximum(torch.minimum(delta, radius), -radius)
    length = per_sample(lp_norm(delta, "l2"), delta)
    return delta * torch.clamp(radius / length.clamp_min(1e-12), max=1.0)


def into_box(x: torch.Tensor, adv: torch.Tensor, eps: torch.Tensor, norm: str) -> torch.Tensor:
    """A point of the ball around ``x`` and of the [0, 1] box: project the step, then clip.

    Clipping to the box only shrinks every coordinate of the perturbation, so the result
    stays inside the ball for both norms.
    """
    return (x + project(adv - x, eps, norm)).clamp(0.0, 1.0)


def normalized_step(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The steepest-ascent direction of unit norm: sign for L-inf, normalised gradient for L2."""
    if norm == "linf":
        return grad.sign()
    return grad / per_sample(lp_norm(grad, "l2").clamp_min(1e-12), grad)


def random_in_ball(x: torch.Tensor, eps: torch.Tensor, norm: str, gen: torch.Generator | SampleStreams) -> torch.Tensor:
    """A random start inside the ball (uniform per pixel for L-inf, a random direction for L2), clipped;
    drawn from per-input streams or from one generator for the batch."""
    per_input = isinstance(gen, SampleStreams)
    if norm == "linf":
        noise = (
            gen.uniform(x.shape[1:], -1.0, 1.0)
            if per_input
            else torch.rand(x.shape, generator=gen, device=x.device) * 2 - 1
        )
    else:
        noise = gen.normal(x.shape[1:]) if per_input else torch.randn(x.shape, generator=gen, device=x.device)
        noise = noise / per_sample(lp_norm(noise, "l2").clamp_min(1e-12), noise)
    return (x + noise * per_sample(eps, x)).clamp(0.0, 1.0)

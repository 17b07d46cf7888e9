"""Noise corruptions of Hendrycks & Dietterich (2019): Gaussian, shot (Poisson), impulse (salt and
pepper) and speckle noise, drawn independently per pixel and channel as in the reference code."""

from __future__ import annotations

import torch

from ._random import Source, normal, poisson, uniform


def gaussian_noise(x: torch.Tensor, c: float, scale: float, gen: Source) -> torch.Tensor:
    """``x + N(0, c^2)``."""
    return normal(x.shape, gen, x, scale=c).add_(x)


def shot_noise(x: torch.Tensor, c: float, scale: float, gen: Source) -> torch.Tensor:
    """``Poisson(c x) / c``: photon noise with ``c`` photons at full intensity."""
    return poisson(x * c, gen) / c


def impulse_noise(x: torch.Tensor, c: float, scale: float, gen: Source) -> torch.Tensor:
    """Salt and pepper as ``skimage.util.random_noise(mode='s&p', amount=c)``: a share ``c`` of the
    values is replaced, half by 0 and half by 1."""
    u = uniform(x.shape, gen, x)  # one draw decides both: u < c flips, and then u < c / 2 (probability 1/2) salts
    return torch.where(u < c, (u >= c / 2).to(x.dtype), x)


def speckle_noise(x: torch.Tensor, c: float, scale: float, gen: Source) -> torch.Tensor:
    """``x + x N(0, c^2)``: multiplicative noise."""
    return normal(x.shape, gen, x, scale=c).mul_(x).add_(x)


# (CIFAR-10-C, ImageNet-C) parameters for severities 1..5
PARAMS = {
    "gaussian_noise": (gaussian_noise, (0.04, 0.06, 0.08, 0.09, 0.10), (0.08, 0.12, 0.18, 0.26, 0.38)),
    "shot_noise": (shot_noise, (500, 250, 100, 75, 50), (60, 25, 12, 5, 3)),
    "impulse_noise": (impulse_noise, (0.01, 0.02, 0.03, 0.05, 0.07), (0.03, 0.06, 0.09, 0.17, 0.27)),
    "speckle_noise": (speckle_noise, (0.06, 0.1, 0.12, 0.16, 0.2), (0.15, 0.2, 0.35, 0.45, 0.6)),
}

"""Digital corruptions of Hendrycks & Dietterich (2019): contrast, brightness, saturate (held out),
pixelate and the elastic transform. JPEG compression lives in ``jpeg``."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ._ops import apply_axes, displace, gaussian_filter, pil_box_matrix, warp_affine
from ._random import Source, uniform


def contrast(x: torch.Tensor, c: float, scale: float, gen: Source) -> torch.Tensor:
    """Pull every channel towards its mean: ``(x - mean) c + mean``."""
    means = x.mean(dim=(2, 3), keepdim=True)
    return torch.lerp(means.expand_as(x), x, c)


def brightness(x: torch.Tensor, c: float, scale: float, gen: Source) -> torch.Tensor:
    """Add ``c`` to the HSV value (clipped), keeping hue and saturation: with H and S fixed every
    channel is proportional to V, so the RGB pixel scales by ``V' / V`` (grey ``V'`` where V = 0).
    Identical to ``skimage.color`` rgb2hsv, add, hsv2rgb."""
    v = x.amax(dim=1, keepdim=True)
    v_new = (v + c).clamp_(0, 1)
    out = x * (v_new / v.clamp_min(1e-30))
    return out.add_(v_new * (v == 0))


def saturate(x: torch.Tensor, c: tuple[float, float], scale: float, gen: Source) -> torch.Tensor:
    """Set the HSV saturation to ``clip(s c0 + c1)`` keeping hue and value: each channel moves from V
    by ``s' / s`` times its distance; a grey pixel (hue 0) becomes ``(V, V (1 - s'), V (1 - s'))``.
    Identical to ``skimage.color`` rgb2hsv, scale, hsv2rgb."""
    v, low = x.amax(dim=1, keepdim=True), x.amin(dim=1, keepdim=True)
    delta = v - low
    s_new = (delta / v.clamp_min(1e-30)).mul_(c[0]).add_(c[1]).clamp_(0, 1)
    # coloured pixels: V - (s' / s) (V - x) with s = delta / V; grey ones (delta = 0, so x = V) stay V
    out = (v - x).mul_(s_new * v / delta.clamp_min(1e-30)).neg_().add_(v)
    if c[1] > 0:  # a grey pixel gets saturation s' = c1 at hue 0: (V, V (1 - s'), V (1 - s'))
        out[:, 1:].sub_(v * s_new * (delta == 0))
    return out


@lru_cache(maxsize=64)
def _pixelate_matrix(size: int, ratio: float) -> np.ndarray:
    """(size, size) weights of box-downsampling one axis to ``int(size ratio)`` and back (PIL ``Image.BOX``)."""
    small = max(1, int(size * ratio))
    return pil_box_matrix(small, size) @ pil_box_matrix(size, small)


def pixelate(x: torch.Tensor, c: float, scale: float, gen: Source) -> torch.Tensor:
    """Box-downsample to ``int(size c)`` and box-upsample back (PIL ``Image.BOX``): down then up
    along each axis, folded into one matrix per axis."""
    h, w = x.shape[-2:]
    return apply_axes(x, _pixelate_matrix(h, c), _pixelate_matrix(w, c))


def _affine_from_points(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """(N, 2, 3) affine maps taking three (x, y) points ``src`` to ``dst`` (OpenCV getAffineTransform)."""
    n = src.shape[0]
    ones = torch.ones(n, 3, 1, dtype=src.dtype, device=src.device)
    a = torch.cat([src, ones], dim=2)  # (N, 3, 3)
    return torch.linalg.solve(a, dst).transpose(1, 2)


def elastic_transform(x: torch.Tensor, c: tuple[float, float, float], scale: float, gen: Source) -> torch.Tensor:
    """A random affine warp (three points moved by up to ``c2`` pixels, reflect-101 border), then a
    displacement field of Gaussian-smoothed (sigma ``c1``, truncate 3) uniform noise times ``c0``
    (bilinear, symmetric border)."""
    alpha, sigma, shift = c[0] * scale, c[1] * scale, c[2] * scale
    n, _, h, w = x.shape
    dev, dt = x.device, torch.float64
    centre = torch.tensor([w // 2, h // 2], dtype=dt, device=dev)
    size = min(h, w) // 3
    pts = torch.stack([centre + size, torch.stack([centre[0] + size, centre[1] - size]), centre - size])
    src = pts.expand(n, 3, 2)
    dst = src + uniform((n, 3, 2), gen, x, -shift, shift).to(dt)
    warped = warp_affine(x, _affine_from_points(dst, src))  # output pixel -> source pixel
    # each image's x field draws, then its y field's, smoothed in one call
    noise = uniform((n, 2, h, w), gen, x, -1.0, 1.0).view(2 * n, 1, h, w)
    fields = gaussian_filter(noise, sigma, "symmetric", truncate=3).view(n, 2, h, w)
    fields.mul_(alpha)
    return displace(warped, fields[:, 1], fields[:, 0])


PARAMS = {
    "contrast": (contrast, (0.75, 0.5, 0.4, 0.3, 0.15), (0.4, 0.3, 0.2, 0.1, 0.05)),
    "brightness": (brightness, (0.05, 0.1, 0.15, 0.2, 0.3), (0.1, 0.2, 0.3, 0.4, 0.5)),
    "saturate": (
        saturate,
        ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
        ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)),
    ),
    "pixelate": (pixelate, (0.95, 0.9, 0.85, 0.75, 0.65), (0.6, 0.5, 0.4, 0.3, 0.25)),
    "elastic_transform": (
        elastic_transform,
        tuple(
            (32 * a, 32 * s, 32 * t)
            for a, s, t in ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03))
        ),
        tuple(
            (244 * a, 244 * s, 244 * t)
            for a, s, t in ((2, 0.7, 0.1), (2, 0.08, 0.2), (0.05, 0.01, 0.02), (0.07, 0.01, 0.02), (0.12, 0.01, 0.02))
        ),
    ),
}

"""Baseline JPEG compression and decompression, batched in torch, as PIL/libjpeg does it.

Encoder: 8-bit RGB to YCbCr (JFIF), 4:2:0 chroma subsampling (2x2 mean), edge replication to
whole blocks, 8x8 DCT, division by the Annex K tables scaled by libjpeg's quality formula,
rounding. Decoder: dequantisation, inverse DCT, rounding to 8 bits, libjpeg's "fancy"
(triangular) chroma upsampling, YCbCr to RGB. Grey images are coded as one luminance plane,
like PIL's mode "L". Floating-point DCTs replace libjpeg's integer ones (differences of a
grey level at most on a few pixels).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F


LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
]).reshape(8, 8)
CHROMINANCE = np.full((8, 8), 99)
CHROMINANCE[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]


def quant_table(base: np.ndarray, quality: int) -> np.ndarray:
    """libjpeg ``jpeg_set_quality`` with ``force_baseline``: scale the table, clamp to 1..255."""
    quality = min(max(int(quality), 1), 100)
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((base * scale + 50) // 100, 1, 255)


@lru_cache(maxsize=8)
def _dct2_matrix() -> np.ndarray:
    """(64, 64) orthonormal 2-D DCT-II of a flattened 8x8 block (JPEG's FDCT)."""
    k = np.arange(8)
    d = np.cos((2 * k[None, :] + 1) * k[:, None] * np.pi / 16) * np.sqrt(2 / 8)
    d[0] /= np.sqrt(2)
    return np.kron(d, d)


def _code_plane(plane: torch.Tensor, table: np.ndarray) -> torch.Tensor:
    """Encode and decode (N, 1, H, W) 0..255 samples, H and W multiples of 8."""
    n, _, h, w = plane.shape
    d = torch.as_tensor(_dct2_matrix(), device=plane.device, dtype=plane.dtype)
    q = torch.as_tensor(table.reshape(-1), device=plane.device, dtype=plane.dtype)
    blocks = (plane - 128).reshape(n, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4).reshape(-1, 64)
    coef = blocks @ d.T
    levels = torch.sign(coef) * torch.floor(coef.abs() / q + 0.5)
    out = ((levels * q) @ d + 128).round().clamp(0, 255)
    return out.reshape(n, h // 8, w // 8, 8, 8).permute(0, 1, 3, 2, 4).reshape(n, 1, h, w)


def _fancy_upsample(c: torch.Tensor) -> torch.Tensor:
    """libjpeg's h2v2 fancy upsampling: each output sample is 3/4 its nearer and 1/4 its farther input
    neighbour along each axis, edges replicated."""
    def axis(t: torch.Tensor, dim: int) -> torch.Tensor:
        n = t.shape[dim]
        prev = torch.cat([t.narrow(dim, 0, 1), t.narrow(dim, 0, n - 1)], dim=dim)
        nxt = torch.cat([t.narrow(dim, 1, n - 1), t.narrow(dim, n - 1, 1)], dim=dim)
        first, second = 0.75 * t + 0.25 * prev, 0.75 * t + 0.25 * nxt
        return torch.stack([first, second], dim=dim + 1).flatten(dim, dim + 1)

    return axis(axis(c, 2), 3)


def jpeg_roundtrip(x: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG-compress and decompress (N, C, H, W) images in [0, 1] (C = 1 or 3) at ``quality``."""
    n, c, h, w = x.shape
    v = (x.clamp(0, 1) * 255).round()
    if c == 1:
        hp, wp = 8 * math.ceil(h / 8), 8 * math.ceil(w / 8)
        return _code_plane(_pad_to(v, hp, wp), quant_table(LUMINANCE, quality))[..., :h, :w] / 255
    hp, wp = 16 * math.ceil(h / 16), 16 * math.ceil(w / 16)
    v = _pad_to(v, hp, wp)
    r, g, b = v[:, 0:1], v[:, 1:2], v[:, 2:3]
    y = (0.299 * r + 0.587 * g + 0.114 * b).round()
    cb = (-0.168735892 * r - 0.331264108 * g + 0.5 * b + 128).round()
    cr = (0.5 * r - 0.418687589 * g - 0.081312411 * b + 128).round()
    y = _code_plane(y, quant_table(LUMINANCE, quality))[..., :h, :w]
    ch, cw = math.ceil(h / 2), math.ceil(w / 2)
    chroma = []
    for plane in (cb, cr):
        small = F.avg_pool2d(plane, 2)
        coded = _code_plane(small, quant_table(CHROMINANCE, quality))[..., :ch, :cw]
        chroma.append(_fancy_upsample(coded).round()[..., :h, :w] - 128)
    cb, cr = chroma
    rgb = torch.cat([y + 1.402 * cr, y - 0.344136286 * cb - 0.714136286 * cr, y + 1.772 * cb], dim=1)
    return rgb.round().clamp(0, 255) / 255


def _pad_to(v: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Replicate the last row and column out to (h, w)."""
    ph, pw = h - v.shape[-2], w - v.shape[-1]
    return F.pad(v, (0, pw, 0, ph), mode="replicate") if ph or pw else v


def jpeg_compression(x: torch.Tensor, c: int, scale: float, gen: torch.Generator | None) -> torch.Tensor:
    """JPEG at quality ``c``."""
    return jpeg_roundtrip(x, c)


PARAMS = {"jpeg_compression": (jpeg_compression, (80, 65, 58, 50, 40), (25, 18, 15, 10, 7))}

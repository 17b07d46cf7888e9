"""Batched torch image operations the corruptions share: borders, filters, sampling, resizing, colour.

Every function takes (N, C, H, W) float tensors and works on any device. Border modes
follow the libraries the reference corruption code used: ``replicate`` (scipy ``nearest``),
``reflect101`` (OpenCV's default, scipy ``mirror``, torch ``reflect``) and ``symmetric``
(scipy ``reflect``).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as OpenCV's RGB2GRAY and PIL's "L" conversion


def border_index(i: torch.Tensor, n: int, mode: str) -> torch.Tensor:
    """Map integer coordinates (any range) into ``[0, n)`` by the border ``mode``."""
    if mode == "replicate" or n == 1:
        return i.clamp(0, n - 1)
    if mode == "reflect101":
        period = 2 * (n - 1)
        i = i.remainder(period)
        return torch.where(i >= n, period - i, i)
    if mode == "symmetric":
        period = 2 * n
        i = i.remainder(period)
        return torch.where(i >= n, period - 1 - i, i)
    raise ValueError(f"unknown border mode {mode!r}")


def pad(x: torch.Tensor, ph: int, pw: int, mode: str) -> torch.Tensor:
    """Pad H by ``ph`` and W by ``pw`` on both sides; pads may exceed the image size."""
    h, w = x.shape[-2:]
    if mode == "replicate" or (mode == "reflect101" and ph < h and pw < w):
        return F.pad(x, (pw, pw, ph, ph), mode="replicate" if mode == "replicate" else "reflect")
    rows = border_index(torch.arange(-ph, h + ph, device=x.device), h, mode)
    cols = border_index(torch.arange(-pw, w + pw, device=x.device), w, mode)
    return x.index_select(-2, rows).index_select(-1, cols)


def correlate(x: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """Correlate every channel with one odd-sized 2-D ``kernel`` (kh, kw), border by ``mode``."""
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    # one depthwise convolution over all N*C planes: far faster on CPU than a batch of 1-channel ones
    padded = pad(x, kh // 2, kw // 2, mode).reshape(1, n * c, h + kh - 1, w + kw - 1)
    weight = kernel.to(x.device, x.dtype).reshape(1, 1, kh, kw).expand(n * c, 1, kh, kw)
    return F.conv2d(padded, weight, groups=n * c).reshape(n, c, h, w)


def gaussian_kernel1d(sigma: float, truncate: float) -> torch.Tensor:
    """scipy.ndimage's sampled Gaussian: radius ``int(truncate * sigma + 0.5)``, normalised."""
    radius = int(truncate * sigma + 0.5)
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return torch.from_numpy(k / k.sum())


@lru_cache(maxsize=256)
def _filter_matrix(n: int, kernel: tuple[float, ...], mode: str) -> np.ndarray:
    """(n, n) matrix correlating a length-n signal with ``kernel`` (odd length), border by ``mode``."""
    r = len(kernel) // 2
    m = np.zeros((n, n))
    rows = np.arange(n)
    for j, weight in enumerate(kernel):
        cols = border_index(torch.from_numpy(rows + j - r), n, mode).numpy()
        np.add.at(m, (rows, cols), weight)
    return m


def filter_separable(x: torch.Tensor, kernel_h: torch.Tensor, kernel_w: torch.Tensor, mode: str) -> torch.Tensor:
    """Correlate H with ``kernel_h`` and W with ``kernel_w`` (1-D, odd), borders folded into two
    (H, H) and (W, W) matrices: exact for kernels of any length, and fast as batched matmuls."""
    h, w = x.shape[-2:]
    rows = _filter_matrix(h, tuple(kernel_h.tolist()), mode)
    cols = _filter_matrix(w, tuple(kernel_w.tolist()), mode)
    return apply_axes(x, rows, cols)


def gaussian_filter(x: torch.Tensor, sigma: float, mode: str = "replicate", truncate: float = 4.0) -> torch.Tensor:
    """Separable Gaussian blur over H and W, as ``scipy.ndimage.gaussian_filter`` /
    ``skimage.filters.gaussian`` (whose default border is ``nearest`` = replicate)."""
    if sigma <= 1e-15:
        return x
    k = gaussian_kernel1d(sigma, truncate)
    return filter_separable(x, k, k, mode)


def warp_affine(x: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """Bilinear affine warp of every image, as OpenCV ``warpAffine`` with its default reflect-101
    border: ``inverse`` (N, 2, 3) maps output pixel (x, y, 1) to source pixel (x, y). Each axis is
    padded by reflection just far enough to hold every source coordinate of the image, or, when that
    would exceed the axis (reflect-101 repeats every 2 (n - 1) pixels), padded by n - 1 with the
    coordinates folded into one period. Images needing the same padding are sampled together by
    one ``grid_sample`` on an ``affine_grid`` grid, computed as one matrix product; an image's
    output therefore does not depend on the other images of the batch."""
    n, _, h, w = x.shape
    inverse = inverse.to(torch.float64)
    corners = torch.tensor(
        [[0.0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], dtype=torch.float64, device=x.device
    )
    reached = corners @ inverse.transpose(1, 2)  # (N, 4, 2): an affine map's extremes are at the corners
    sizes = torch.tensor([w, h], dtype=torch.float64, device=x.device)
    need = (torch.maximum(-reached.amin(dim=1), reached.amax(dim=1) - (sizes - 1)).clamp_min(0).ceil() + 1).long().cpu()
    limit = torch.tensor([w - 1, h - 1])
    plans = torch.cat(
        [torch.minimum(need, limit), ((need > limit) & (limit > 0)).long()], dim=1
    )  # (N, 4): pw, ph, fold x, fold y
    if n == 0:
        return x.clone()
    out = torch.empty_like(x)
    for plan in torch.unique(plans, dim=0):
        members = torch.nonzero((plans == plan).all(dim=1)).flatten().to(x.device)
        pw, ph, fold_x, fold_y = plan.tolist()
        out[members] = _warp_padded(x[members], inverse[members], (pw, ph), (bool(fold_x), bool(fold_y)))
    return out


def _warp_padded(
    x: torch.Tensor, inverse: torch.Tensor, pads: tuple[int, int], folded: tuple[bool, bool]
) -> torch.Tensor:
    n, _, h, w = x.shape
    pw, ph = pads
    padded = F.pad(x, (pw, pw, ph, ph), mode="reflect") if pw or ph else x
    hp, wp = h + 2 * ph, w + 2 * pw
    # affine_grid's output coordinate u in [-1, 1] is pixel (u + 1) W / 2 - 1/2; source pixel s is u' = (2 (s + p) + 1) / W' - 1
    to_pixels = torch.tensor(
        [[w / 2, 0, (w - 1) / 2], [0, h / 2, (h - 1) / 2], [0, 0, 1]], dtype=torch.float64, device=x.device
    )
    to_unit = torch.tensor(
        [[2 / wp, 0, (2 * pw + 1) / wp - 1], [0, 2 / hp, (2 * ph + 1) / hp - 1]], dtype=torch.float64, device=x.device
    )
    theta = to_unit @ torch.cat([inverse, to_pixels[2:].expand(n, 1, 3)], dim=1) @ to_pixels
    grid = torch.matmul(_unit_grid(h, w, x.dtype, x.device), theta.to(x.dtype).transpose(1, 2)).view(n, h, w, 2)
    for axis, (size, pad, padded_size) in enumerate(((w, pw, wp), (h, ph, hp))):
        if folded[axis]:  # source pixel s into [0, 2 (n - 1)): u' from (2 p + 1) / n' - 1 over 4 (n - 1) / n'
            start = (2 * pad + 1) / padded_size - 1
            grid[..., axis] = torch.remainder(grid[..., axis] - start, 4 * (size - 1) / padded_size) + start
    # every coordinate now lies inside the padded image: grid_sample's border mode has nothing to do
    return F.grid_sample(padded, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _unit_grid(h: int, w: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(1, H W, 3) rows (u, v, 1): ``affine_grid``'s coordinates of the pixels, before its product."""
    identity = torch.eye(2, 3, dtype=dtype, device=device)[None]
    base = F.affine_grid(identity, [1, 1, h, w], align_corners=False).view(1, h * w, 2)
    return torch.cat([base, torch.ones(1, h * w, 1, dtype=dtype, device=device)], dim=-1)


def displace(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of every image at (y + dy, x + dx) for displacements (N, H, W), with the
    symmetric border, as ``scipy.ndimage.map_coordinates(order=1, mode='reflect')``."""
    _, _, h, w = x.shape
    # grid_sample's coordinate of pixel (y, x) is ((2 x + 1) / W - 1, (2 y + 1) / H - 1)
    identity = F.affine_grid(torch.eye(2, 3, dtype=x.dtype, device=x.device)[None], [1, 1, h, w], align_corners=False)
    step = torch.tensor([2 / w, 2 / h], dtype=x.dtype, device=x.device)
    grid = torch.stack([dx, dy], dim=-1).mul_(step).add_(identity)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def gather_pixels(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``out[n, c, p] = x[n, c, index[n, p]]`` over flattened pixels, for per-image pixel maps."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h * w).gather(2, index.reshape(n, 1, -1).expand(n, c, -1)).reshape(n, c, h, w)


def pil_box_matrix(in_size: int, out_size: int) -> np.ndarray:
    """The (out, in) weights of PIL's BOX resampling along one axis (Pillow's precompute_coeffs)."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    m = np.zeros((out_size, in_size))
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        t = (np.arange(xmin, xmax) - center + 0.5) / filterscale
        weights = ((t > -0.5) & (t <= 0.5)).astype(np.float64)
        if weights.sum() > 0:
            m[xx, xmin:xmax] = weights / weights.sum()
    return m


def linear_zoom_matrix(in_size: int, out_size: int) -> np.ndarray:
    """The (out, in) weights of ``scipy.ndimage.zoom(order=1)``: output o samples input o*(in-1)/(out-1)."""
    m = np.zeros((out_size, in_size))
    step = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
    for o in range(out_size):
        pos = o * step
        i0 = min(math.floor(pos), in_size - 1)
        frac = pos - i0
        m[o, i0] += 1 - frac
        if frac > 0:
            m[o, min(i0 + 1, in_size - 1)] += frac
    return m


def clipped_zoom_matrix(size: int, factor: float) -> np.ndarray:
    """(size, size) weights of the reference ``clipped_zoom`` along one axis: crop the centre
    ``ceil(size / factor)`` pixels, zoom them linearly by ``factor``, keep the centre ``size``."""
    crop = math.ceil(size / factor)
    top = (size - crop) // 2
    out = round(crop * factor)
    trim = (out - size) // 2
    m = np.zeros((size, size))
    m[:, top : top + crop] = linear_zoom_matrix(crop, out)[trim : trim + size]
    return m


def apply_axes(x: torch.Tensor, rows: np.ndarray | torch.Tensor, cols: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``rows @ x @ cols.T`` for every image and channel: a separable linear resampling."""
    r = torch.as_tensor(rows, dtype=x.dtype, device=x.device)
    c = torch.as_tensor(cols, dtype=x.dtype, device=x.device)
    return torch.matmul(torch.matmul(r, x), c.transpose(-1, -2))


def luma(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB to (N, 1, H, W) grey with BT.601 weights."""
    n, _, h, w = x.shape
    weights = torch.tensor(LUMA, dtype=x.dtype, device=x.device)
    return torch.matmul(weights, x.reshape(n, 3, h * w)).view(n, 1, h, w)


def quantize_floor(x: torch.Tensor) -> torch.Tensor:
    """``np.uint8(x * 255) / 255`` for x in [0, 1]: the truncation the reference code applies."""
    return (x.clamp(0, 1) * 255).floor() / 255


def quantize_round(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest of the 256 uint8 levels (what saving an 8-bit image does)."""
    return (x.clamp(0, 1) * 255).round() / 255

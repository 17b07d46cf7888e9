"""Blur corruptions of Hendrycks & Dietterich (2019): defocus, glass, motion, zoom and Gaussian blur.

Radii and sigmas are in pixels at the reference resolution and are multiplied by ``scale``
(image size / reference size) by the caller's table; zoom factors are relative and kept.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache

import numpy as np
import torch
from scipy import sparse

from ._ops import (
    apply_axes,
    clipped_zoom_matrix,
    correlate,
    gather_pixels,
    gaussian_filter,
    quantize_floor,
)
from ._random import Source, integers, uniform


def disk_kernel(radius: float, alias_blur: float) -> torch.Tensor:
    """The reference ``disk``: an aliased disk of ``radius`` (on a grid of at least 17x17) smoothed by
    a 3x3 (5x5 above radius 8) Gaussian of sigma ``alias_blur`` (OpenCV GaussianBlur, reflect-101 border),
    trimmed to its non-zero support."""
    half = 8 if radius <= 8 else math.ceil(radius)
    ksize = 3 if radius <= 8 else 5
    grid = np.arange(-half, half + 1)
    xx, yy = np.meshgrid(grid, grid)
    disk = (xx**2 + yy**2 <= radius**2).astype(np.float64)
    disk /= disk.sum()
    t = np.arange(ksize) - (ksize - 1) / 2
    g = np.exp(-(t**2) / (2 * alias_blur**2))
    g = torch.from_numpy(g / g.sum())
    k = torch.from_numpy(disk)[None, None]
    k = correlate(correlate(k, g[:, None], "reflect101"), g[None, :], "reflect101")[0, 0]
    nz = torch.nonzero(k.abs() > 0)
    r = int((nz - half).abs().max()) if len(nz) else 0
    return k[half - r : half + r + 1, half - r : half + r + 1]


def defocus_blur(x: torch.Tensor, c: tuple[float, float], scale: float, gen: Source) -> torch.Tensor:
    """Correlate with ``disk(radius, alias_blur)`` (OpenCV filter2D, reflect-101 border)."""
    return correlate(x, disk_kernel(c[0] * scale, c[1] * scale), "reflect101")


def gaussian_blur(x: torch.Tensor, c: float, scale: float, gen: Source) -> torch.Tensor:
    """``skimage.filters.gaussian(sigma=c)`` (truncate 4, nearest border)."""
    return gaussian_filter(x, c * scale)


def glass_index(offsets: torch.Tensor, h: int, w: int, delta: int) -> torch.Tensor:
    """The pixel map of the reference's local shuffling, (N, H*W) source indices.

    The reference scans rows from ``h - delta`` down to ``delta + 1`` and, within a row, columns
    from ``w - delta`` down to ``delta + 1``, and for each pixel executes
    ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` on an (H, W, 3) array. Both sides are numpy
    views, so this copies pixel (h', w') into (h, w) and leaves (h', w') as it was; that
    copy, with the values current at that point of the scan, is what the published data
    contain and what this map reproduces. ``offsets`` holds (dx, dy) in ``[-delta, delta)``
    for every (image, iteration, row, column) of the scan. Rows are processed in order; the
    chains of copies inside a row are resolved by pointer jumping.
    """
    n, iterations, _, ncols, _ = offsets.shape
    device = offsets.device
    idx = torch.arange(h * w, device=device).repeat(n, 1).view(n, h, w)
    cols = torch.arange(w - delta, delta, -1, device=device)
    positions = torch.arange(ncols, device=device).expand(n, ncols)
    batch = torch.arange(n, device=device)[:, None]
    for it in range(iterations):
        for r, row in enumerate(range(h - delta, delta, -1)):
            dx, dy = offsets[:, it, r, :, 0], offsets[:, it, r, :, 1]
            src_r, src_c = row + dy, cols + dx
            base = idx[batch, src_r, src_c]
            chained = (dy == 0) & (dx > 0) & (src_c <= w - delta)
            if bool(chained.any()):
                nxt = torch.where(chained, (w - delta) - src_c, positions)
                for _ in range(max(1, math.ceil(math.log2(ncols))) + 1):
                    nxt = nxt.gather(1, nxt)
                base = base.gather(1, nxt)
            idx[:, row, cols] = base
    return idx.view(n, h * w)


def glass_blur(x: torch.Tensor, c: tuple[float, int, int], scale: float, gen: Source) -> torch.Tensor:
    """Blur, quantise to uint8 (truncating, as the reference), shuffle pixels locally, blur again."""
    sigma, delta, iterations = c[0] * scale, max(1, round(c[1] * scale)), c[2]
    n, _, h, w = x.shape
    y = quantize_floor(gaussian_filter(x, sigma))
    nrows, ncols = max(h - 2 * delta, 0), max(w - 2 * delta, 0)
    if nrows and ncols:
        offsets = integers(-delta, delta, (n, iterations, nrows, ncols, 2), gen, x)
        y = gather_pixels(y, glass_index(offsets, h, w, delta))
    return gaussian_filter(y, sigma)


def motion_kernel(radius: int, sigma: float) -> torch.Tensor:
    """Weights of the taps of ImageMagick's motion blur as re-implemented in NumPy by the
    ``imagecorruptions`` package: a one-sided Gaussian over ``2 radius + 1`` taps, normalised."""
    t = np.arange(2 * radius + 1, dtype=np.float64)
    k = np.exp(-(t**2) / (2 * sigma**2))
    return torch.from_numpy(k / k.sum())


def motion_blur_at(x: torch.Tensor, radius: int, sigma: float, angle: torch.Tensor) -> torch.Tensor:
    """Motion blur of each image along its own ``angle`` (degrees, (N,)): tap i takes the image
    shifted by ``(-ceil(i sin a - 0.5), -ceil(i cos a - 0.5))`` with replicated edges; taps from the
    first one that is at least a full image away on are dropped (not renormalised), as in the
    reference. Trailing taps whose weights sum to less than half the images' float resolution at
    1.0 (``2**-24`` for float32) are skipped: they cannot change the result by more than that.

    The taps are grouped by their row shift d: those sharing d act on the rows shifted by d as one
    (W, W) matrix over columns (replicated edges folded in), so an image costs one small matrix
    product per row shift it uses. Images are ordered by direction and by the largest row shift
    they use, so that each product runs on one contiguous slice of the batch; their columns are
    reversed, which makes every matrix a Hankel one (see ``_row_shift_matrices``). Steep blurs
    (snow's) run on the transposed images, where their shifts are mostly along columns.
    """
    n, c, h, w = x.shape
    weights = motion_kernel(radius, sigma)
    tail = weights.flip(0).cumsum(0).flip(0)  # tail[i]: the weight of taps i and after
    weights = weights[: max(1, int((tail > torch.finfo(x.dtype).eps / 2).sum()))]
    taps = torch.arange(len(weights), dtype=torch.float64)
    rad = torch.deg2rad(angle.detach().cpu().to(torch.float64))[:, None]
    dy = -torch.ceil(taps * torch.sin(rad) - 0.5).long()  # (N, T)
    dx = -torch.ceil(taps * torch.cos(rad) - 0.5).long()
    valid = ((dy.abs() < h) & (dx.abs() < w)).long().cumprod(dim=1).bool()
    if int((dy.abs() * valid).amax(dim=1).sum()) > int((dx.abs() * valid).amax(dim=1).sum()):
        x, dy, dx, h, w = x.transpose(-1, -2), dx, dy, w, h
        transposed = True
    else:
        transposed = False
    down = (dy > 0).any(dim=1)  # rows shift down (d > 0) or up (d < 0), never both within one image
    row_shift = dy.abs() * valid
    reach = row_shift.amax(dim=1)  # the largest row shift each image uses
    # downward images first, then upward ones; within each, the widest reach first
    order = torch.argsort(torch.where(down, 0, 1) * (h + 1) + (h - reach), stable=True)
    dx, row_shift, valid, reach = dx[order], row_shift[order], valid[order], reach[order]
    n_down = int(down.sum())
    span = int(reach.max()) + 1
    groups = ((0, n_down, 1), (n_down, n, -1))  # (first image, end, direction of the row shifts)
    uses = torch.stack([(reach[first:end, None] >= torch.arange(span)).sum(0) for first, end, _ in groups])  # (2, span)
    base = (uses.flatten().cumsum(0) - uses.flatten()).view(2, span)  # where each (group, shift) block starts
    dev = x.device
    mats = _row_shift_matrices(dx, row_shift, weights.to(x.dtype) * valid, base, n_down, w, int(uses.sum())).to(dev)
    # (N, H + 2 (span - 1), C, W) in sorted order, edge rows replicated: a row shift is a slice,
    # and rows and channels merge into the rows of one matrix
    edge = span - 1
    order = order.to(dev)
    padded = torch.empty(n, h + 2 * edge, c, w, dtype=x.dtype, device=dev)
    padded[:, edge : edge + h] = x.index_select(0, order).flip(-1).permute(0, 2, 1, 3)
    padded[:, :edge] = padded[:, edge : edge + 1]
    padded[:, edge + h :] = padded[:, edge + h - 1 : edge + h]
    out = torch.empty(n, h, c, w, dtype=x.dtype, device=dev)
    for g, (first, _, direction) in enumerate(groups):
        for d in range(span):
            k = int(uses[g, d])
            if k == 0:
                break
            start = edge - direction * d  # output row r reads input row r - direction d
            source_rows = padded[first : first + k, start : start + h].reshape(k, h * c, w)
            target = out[first : first + k].view(k, h * c, w)
            m = mats[int(base[g, d]) : int(base[g, d]) + k]
            if d == 0:
                torch.bmm(source_rows, m, out=target)
            else:
                target.baddbmm_(source_rows, m)
    blurred = torch.empty(n, c, h, w, dtype=x.dtype, device=dev)
    blurred.permute(0, 2, 1, 3).index_copy_(0, order, out)  # back to the caller's order and NCHW, in one pass
    return blurred.transpose(-1, -2).contiguous() if transposed else blurred


def _row_shift_matrices(
    dx: torch.Tensor,
    row_shift: torch.Tensor,
    tap_weight: torch.Tensor,
    base: torch.Tensor,
    n_down: int,
    w: int,
    total: int,
) -> torch.Tensor:
    """The (W, W) column matrix of every (image, row shift) pair in use, for taps (N, T) already
    in image order, acting on images whose columns are reversed.

    Tap i sends input column clamp(col - dx_i) to output column col with its weight, so a pair's
    matrix over (source column, col) is Toeplitz, ``v[col - source]`` with v its weights by
    column shift, except the two edge rows, which collect the clamped taps. With the source
    columns reversed (row j is source W-1-j) it is Hankel, ``v[j + col - (W-1)]``: one strided
    view of v, copied out, then the edge rows overwritten by running sums of v.

    Blocks are ordered by group (downward images first), then row shift, then image; the images of
    a group using shift d are a prefix of the group, so the block of (group, d) starts at
    ``base[group, d]`` and holds one matrix per image of that prefix; ``total`` matrices in all."""
    n = dx.shape[0]
    image = torch.arange(n)
    group = (image >= n_down).long()
    pair = base[group[:, None], row_shift] + (image - group * n_down)[:, None]  # (N, T)
    span = 2 * w - 1  # column shifts -(W-1) .. W-1; taps beyond are invalid (weight 0)
    shift = (dx + (w - 1)).clamp_(0, span - 1)
    v = (
        torch.zeros(total * span, dtype=tap_weight.dtype)
        .scatter_add_(0, (pair * span + shift).flatten(), tap_weight.flatten())
        .view(total, span)
    )
    mats = v.as_strided((total, w, w), (span, 1, 1)).contiguous()
    mats[:, 0] = v.cumsum(1)[:, :w]  # source column W-1 gets every tap that lands at or beyond it
    mats[:, w - 1] = v.flip(1).cumsum(1).flip(1)[:, w - 1 :]  # source column 0 likewise
    return mats


def motion_blur(x: torch.Tensor, c: tuple[float, float], scale: float, gen: Source) -> torch.Tensor:
    """Motion blur at an angle drawn uniformly from [-45, 45] degrees per image."""
    angle = uniform((x.shape[0],), gen, x, -45.0, 45.0)
    return motion_blur_at(x, max(1, round(c[0] * scale)), max(c[1] * scale, 1e-3), angle)


@lru_cache(maxsize=32)
def _zoom_sum(h: int, w: int, factors: tuple[float, ...]) -> torch.Tensor:
    """The (H*W, H*W) sparse map summing the clipped zooms by ``factors`` (a few taps per pixel)."""
    total = sum(sparse.kron(clipped_zoom_matrix(h, z), clipped_zoom_matrix(w, z), format="csr") for z in factors)
    total = sparse.csr_matrix(total)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(
            torch.from_numpy(total.indptr).long(),
            torch.from_numpy(total.indices).long(),
            torch.from_numpy(total.data).float(),
            size=total.shape,
        )


def zoom_blur(x: torch.Tensor, factors: np.ndarray, scale: float, gen: Source) -> torch.Tensor:
    """Average of the image and its centre zooms (the reference ``clipped_zoom``, linear interpolation)."""
    n, c, h, w = x.shape
    zoom = _zoom_sum(h, w, tuple(float(z) for z in factors)).to(device=x.device, dtype=x.dtype)
    zoomed = (zoom @ x.reshape(n * c, h * w).T.contiguous()).T.reshape(n, c, h, w)
    return (x + zoomed) / (len(factors) + 1)


def clipped_zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    """The reference ``clipped_zoom`` of every image: zoom into the centre by ``factor``."""
    h, w = x.shape[-2:]
    return apply_axes(x, clipped_zoom_matrix(h, factor), clipped_zoom_matrix(w, factor))


PARAMS = {
    "defocus_blur": (
        defocus_blur,
        ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
        ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
    ),
    "glass_blur": (
        glass_blur,
        ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
        ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
    ),
    "motion_blur": (
        motion_blur,
        ((10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3)),
        ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
    ),
    "zoom_blur": (
        zoom_blur,
        (
            np.arange(1, 1.06, 0.01),
            np.arange(1, 1.11, 0.01),
            np.arange(1, 1.16, 0.01),
            np.arange(1, 1.21, 0.01),
            np.arange(1, 1.26, 0.01),
        ),
        (
            np.arange(1, 1.11, 0.01),
            np.arange(1, 1.16, 0.01),
            np.arange(1, 1.21, 0.02),
            np.arange(1, 1.26, 0.02),
            np.arange(1, 1.31, 0.03),
        ),
    ),
    "gaussian_blur": (gaussian_blur, (0.4, 0.6, 0.7, 0.8, 1), (1, 2, 3, 4, 6)),
}

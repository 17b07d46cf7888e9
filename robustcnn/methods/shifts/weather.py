"""Weather corruptions of Hendrycks & Dietterich (2019): snow, frost, fog and spatter (held out).

Colour corruptions receive RGB images (grey images are expanded by the caller).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._ops import correlate, gaussian_filter, luma, quantize_floor, quantize_round
from ._random import Source, integers, normal, uniform
from .blur import clipped_zoom, motion_blur_at
from .frost import frost_textures


def diamond_square(n: int, mapsize: int, wibbledecay: float, gen: Source, device: torch.device) -> torch.Tensor:
    """(n, mapsize, mapsize) unnormalised diamond-square maps: the reference ``plasma_fractal``
    (including its random offsets ``wibble * U(-wibble, wibble)``) before its rescaling to [0, 1].

    Each level holds the lattice points known so far as one contiguous (n, k, k) grid, builds the
    three new point sets (cell centres, the points between horizontal and between vertical
    neighbours) as contiguous grids too, and interleaves the four into the (n, 2k, 2k) grid of the
    next level: the reference's sums, in fewer and denser operations than its strided updates.
    """
    corners = torch.zeros(n, 1, 1, dtype=torch.float32, device=device)
    wibble = 100.0

    def wibbled(total: torch.Tensor) -> torch.Tensor:
        return uniform(tuple(total.shape), gen, total, -wibble * wibble, wibble * wibble).add_(total, alpha=0.25)

    for _ in range(max(0, int(math.log2(mapsize)))):
        k = corners.shape[1]
        square = corners + corners.roll(-1, dims=1)
        centres = wibbled(square.add_(square.roll(-1, dims=2)))
        shared = centres + corners
        across = wibbled(shared + centres.roll(1, dims=1) + corners.roll(-1, dims=2))  # between row neighbours
        down = wibbled(shared.add_(centres.roll(1, dims=2)).add_(corners.roll(-1, dims=1)))  # between column neighbours
        grid = torch.empty(n, k, 2, k, 2, dtype=torch.float32, device=device)
        grid[:, :, 0, :, 0] = corners
        grid[:, :, 0, :, 1] = across
        grid[:, :, 1, :, 0] = down
        grid[:, :, 1, :, 1] = centres
        corners = grid.view(n, 2 * k, 2 * k)
        wibble /= wibbledecay
    return corners


def fog(x: torch.Tensor, c: tuple[float, float], scale: float, gen: Source) -> torch.Tensor:
    """Add ``c0`` times a plasma fractal (the next power-of-two map, cropped) and rescale by the maximum:
    ``(x + c0 p) M / (M + c0)`` with M the image's maximum, p the fractal rescaled to [0, 1]."""
    n, _, h, w = x.shape
    mapsize = 1 << max(1, math.ceil(math.log2(max(h, w))))
    m = diamond_square(n, mapsize, c[1], gen, x.device)
    flat = m.view(n, -1)
    low, high = flat.amin(dim=1).view(n, 1, 1, 1), flat.amax(dim=1).view(n, 1, 1, 1)
    max_val = x.view(n, -1).amax(dim=1).view(n, 1, 1, 1)
    shrink = max_val / (max_val + c[0])
    # x shrink + c0 shrink (m - low) / (high - low): the fractal's rescaling folded into two per-image factors
    gain = (c[0] * shrink / (high - low).clamp_min(1e-12)).to(x.dtype)
    fractal = torch.addcmul(-low.to(x.dtype) * gain, m[:, None, :h, :w].to(x.dtype), gain)
    return torch.addcmul(fractal, x, shrink)


def snow(x: torch.Tensor, c: tuple[float, ...], scale: float, gen: Source) -> torch.Tensor:
    """Zoomed, thresholded Gaussian flakes, motion-blurred at -135..-45 degrees, added twice (once
    rotated by 180 degrees) to an image lightened towards ``1.5 grey + 0.5``."""
    n, _, h, w = x.shape
    layer = clipped_zoom(normal((n, 1, h, w), gen, x, loc=c[0], scale=c[1]), c[2])
    layer = quantize_floor(layer.masked_fill_(layer < c[3], 0.0))
    angle = uniform((n,), gen, x, -135.0, -45.0)
    layer = quantize_round(motion_blur_at(layer, max(1, round(c[4] * scale)), max(c[5] * scale, 1e-3), angle))
    lifted = (luma(x) if x.shape[1] == 3 else x) * 1.5 + 0.5
    lightened = torch.lerp(torch.maximum(x, lifted), x, c[6])  # c6 x + (1 - c6) max(x, 1.5 grey + 0.5)
    return lightened.add_(layer + layer.flip(-1, -2))


def frost(x: torch.Tensor, c: tuple[float, float], scale: float, gen: Source) -> torch.Tensor:
    """``c0 x + c1 frost``, with a random crop of one of five procedurally generated frost textures."""
    n, _, h, w = x.shape
    bank = frost_textures(h, w, x.device, x.dtype)  # (5, 3, S, S)
    k, side = bank.shape[0], bank.shape[-1]
    which = integers(0, k, (n,), gen, x)
    top = integers(0, side - h + 1, (n,), gen, x)
    left = integers(0, side - w + 1, (n,), gen, x)
    rows = (top[:, None] + torch.arange(h, device=x.device)).view(n, 1, h, 1)
    cols = (left[:, None] + torch.arange(w, device=x.device)).view(n, 1, 1, w)
    chans = torch.arange(3, device=x.device).view(1, 3, 1, 1)
    crops = bank[which.view(n, 1, 1, 1), chans, rows, cols]
    return c[0] * x + c[1] * crops


def _canny(img: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Canny edges of (N, 1, H, W) uint8-valued images as OpenCV (3x3 Sobel, L1 magnitude,
    replicated border, 8-connected hysteresis)."""
    sx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=img.dtype)
    gx = correlate(img, sx, "replicate")
    gy = correlate(img, sx.T, "replicate")
    mag = gx.abs() + gy.abs()
    padded = F.pad(mag, (1, 1, 1, 1))

    def neighbour(dy: int, dx: int) -> torch.Tensor:
        h, w = mag.shape[-2:]
        return padded[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    tan22, tan67 = math.tan(math.radians(22.5)), math.tan(math.radians(67.5))
    ax, ay = gx.abs(), gy.abs()
    horizontal = ay <= ax * tan22
    vertical = ay > ax * tan67
    s = torch.where(gx * gy < 0, -1, 1)
    diag_a = torch.where(s > 0, neighbour(-1, -1), neighbour(-1, 1))
    diag_b = torch.where(s > 0, neighbour(1, 1), neighbour(1, -1))
    local_max = torch.where(
        horizontal,
        (mag > neighbour(0, -1)) & (mag >= neighbour(0, 1)),
        torch.where(vertical, (mag > neighbour(-1, 0)) & (mag >= neighbour(1, 0)), (mag > diag_a) & (mag > diag_b)),
    )
    candidate = local_max & (mag > low)
    edges = candidate & (mag > high)
    while True:
        grown = candidate & _dilate3(edges)
        if bool((grown == edges).all()):
            return edges
        edges = grown


def _dilate3(mask: torch.Tensor) -> torch.Tensor:
    """3x3 binary dilation of (N, 1, H, W) masks (zero border): two separable ORs of shifted views."""
    p = F.pad(mask, (1, 1, 1, 1))
    rows = p[..., :-2, :] | p[..., 1:-1, :] | p[..., 2:, :]
    return rows[..., :-2] | rows[..., 1:-1] | rows[..., 2:]


def _distance_to(edges: torch.Tensor, cap: int) -> torch.Tensor:
    """Euclidean distance of every pixel to the nearest edge pixel, capped at ``cap``
    (exact two-pass transform within the cap). Column distances by doubling: steps of 1, 2, 4, ...
    rows, each taking the better of a pixel's distance and its neighbour's plus the step, find
    every distance below the next power of two (any such distance is a sum of distinct steps).
    Then the minimum over horizontal offsets k of ``col(x + k)^2 + k^2``, stopping once ``k^2``
    exceeds every distance."""
    h, w = edges.shape[-2:]
    big = float(cap + 1)
    col = torch.where(edges, 0.0, big)
    step = 1
    while step <= big and step < h:
        torch.minimum(col[..., step:, :], col[..., :-step, :] + step, out=col[..., step:, :])
        torch.minimum(col[..., :-step, :], col[..., step:, :] + step, out=col[..., :-step, :])
        step *= 2
    col.clamp_(max=big)
    col2 = col.square()
    best = col2.clone()
    for k in range(1, min(cap + 1, w - 1) + 1):
        if k * k >= float(best.max()):
            break
        torch.minimum(best[..., k:], col2[..., :-k] + k * k, out=best[..., k:])
        torch.minimum(best[..., :-k], col2[..., k:] + k * k, out=best[..., :-k])
    return best.sqrt().clamp(max=float(cap))


def _equalize_hist(img: torch.Tensor) -> torch.Tensor:
    """OpenCV ``equalizeHist`` of (N, 1, H, W) integer-valued (0..255) images, per image."""
    n = img.shape[0]
    v = img.reshape(n, -1).long().clamp(0, 255)
    hist = torch.zeros(n, 256, device=img.device).scatter_add_(1, v, torch.ones_like(v, dtype=torch.float32))
    total = hist.sum(dim=1, keepdim=True)
    first = (hist > 0).float().argmax(dim=1, keepdim=True)
    first_count = hist.gather(1, first)
    cdf = hist.cumsum(dim=1) - first_count
    lut = (cdf * 255 / (total - first_count).clamp_min(1)).round().clamp(0, 255)
    constant = first_count == total
    lut = torch.where(constant, first.float().expand_as(lut), lut)
    return lut.gather(1, v).view_as(img)


def _water(liquid: torch.Tensor, strength: float) -> torch.Tensor:
    """The reference's water mask: Canny edges of the liquid layer, distance to them (capped at 20),
    box blur, histogram equalisation, an emboss filter and a box blur, times the layer, normalised."""
    layer = (liquid.clamp(0, 1) * 255).floor()
    edges = _canny(layer, 50, 150)
    box = torch.full((3, 3), 1 / 9, dtype=layer.dtype)
    dist = correlate(_distance_to(edges, 20), box, "reflect101").floor()
    dist = _equalize_hist(dist)
    emboss = torch.tensor([[-2.0, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=layer.dtype)
    dist = correlate(dist, emboss, "reflect101").round().clamp(0, 255)
    dist = correlate(dist, box, "reflect101")
    m = layer * dist
    return m / m.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12) * strength


def spatter(x: torch.Tensor, c: tuple[float, ...], scale: float, gen: Source) -> torch.Tensor:
    """A thresholded, blurred Gaussian liquid layer rendered as pale-turquoise water (c5 = 0) or as
    mud-brown splashes (c5 = 1)."""
    n, _, h, w = x.shape
    liquid = gaussian_filter(normal((n, 1, h, w), gen, x, loc=c[0], scale=c[1]), c[2] * scale)
    liquid = torch.where(liquid < c[3], torch.zeros_like(liquid), liquid)
    if c[5] == 0:
        colour = torch.tensor([175 / 255, 238 / 255, 238 / 255], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return x + _water(liquid, c[4]) * colour
    m = gaussian_filter((liquid > c[3]).to(x.dtype), c[4] * scale)
    m = torch.where(m < 0.8, torch.zeros_like(m), m)
    colour = torch.tensor([63 / 255, 42 / 255, 20 / 255], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return x * (1 - m) + colour * m


PARAMS = {
    "snow": (
        snow,
        (
            (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
            (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
            (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
            (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
            (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
        ),
        (
            (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
            (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
            (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
            (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
            (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
        ),
    ),
    "frost": (
        frost,
        ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
        ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)),
    ),
    "fog": (
        fog,
        ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
        ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)),
    ),
    "spatter": (
        spatter,
        (
            (0.62, 0.1, 0.7, 0.7, 0.5, 0),
            (0.65, 0.1, 0.8, 0.7, 0.5, 0),
            (0.65, 0.3, 1, 0.69, 0.5, 0),
            (0.65, 0.1, 0.7, 0.69, 0.6, 1),
            (0.65, 0.1, 0.5, 0.68, 0.6, 1),
        ),
        (
            (0.65, 0.3, 4, 0.69, 0.6, 0),
            (0.65, 0.3, 3, 0.68, 0.6, 0),
            (0.65, 0.3, 2, 0.68, 0.5, 0),
            (0.65, 0.3, 1, 0.65, 1.5, 1),
            (0.67, 0.4, 1, 0.65, 1.5, 1),
        ),
    ),
}

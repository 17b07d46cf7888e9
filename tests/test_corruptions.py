"""corrupt(): fidelity to independent single-image reference computations (PIL, scipy, scikit-image,
following the ImageNet-C / CIFAR-10-C definitions), noise statistics, shapes, seeding, bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
import scipy.ndimage as ndi
import skimage.color
import skimage.data
import skimage.filters
import torch
import torch.nn.functional as F
from PIL import Image

from robustcnn.errors import InvalidInputError
from robustcnn.methods.shifts import CORRUPTIONS, corrupt
from robustcnn.methods.shifts.blur import glass_index, motion_blur_at
from robustcnn.methods.shifts.corruptions import IN_RANGE

CIFAR = {
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "saturate": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
    "jpeg_compression": (80, 65, 58, 50, 40),
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1),
    "zoom_blur": tuple(np.arange(1, b, 0.01) for b in (1.06, 1.11, 1.16, 1.21, 1.26)),
}


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    """Two 32x32 RGB uint8 photographs (scikit-image samples), as CIFAR-sized inputs."""
    out = []
    for img in (skimage.data.chelsea(), skimage.data.coffee()):
        t = torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255
        small = F.interpolate(t, size=(32, 32), mode="bilinear", antialias=True).clamp(0, 1)
        out.append((small[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    return np.stack(out)


# --- single-image references, written from the published definitions -------------------------------


def ref_brightness(img: np.ndarray, c: float) -> np.ndarray:
    hsv = skimage.color.rgb2hsv(img / 255.0)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return np.clip(skimage.color.hsv2rgb(hsv), 0, 1)


def ref_saturate(img: np.ndarray, c: tuple[float, float]) -> np.ndarray:
    hsv = skimage.color.rgb2hsv(img / 255.0)
    hsv[..., 1] = np.clip(hsv[..., 1] * c[0] + c[1], 0, 1)
    return np.clip(skimage.color.hsv2rgb(hsv), 0, 1)


def ref_contrast(img: np.ndarray, c: float) -> np.ndarray:
    x = img / 255.0
    means = x.mean(axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1)


def ref_pixelate(img: np.ndarray, c: float) -> np.ndarray:
    im = Image.fromarray(img)
    im = im.resize((int(32 * c), int(32 * c)), Image.BOX).resize((32, 32), Image.BOX)
    return np.asarray(im) / 255.0


def ref_jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB")) / 255.0


def ref_defocus(img: np.ndarray, c: tuple[float, float]) -> np.ndarray:
    radius, alias_blur = c
    grid = np.arange(-8, 9)
    xx, yy = np.meshgrid(grid, grid)
    disk = (xx**2 + yy**2 <= radius**2).astype(np.float64)
    disk /= disk.sum()
    g = np.exp(-((np.arange(3) - 1.0) ** 2) / (2 * alias_blur**2))
    g /= g.sum()
    kernel = ndi.correlate1d(ndi.correlate1d(disk, g, axis=0, mode="mirror"), g, axis=1, mode="mirror")
    x = img / 255.0
    return np.clip(np.stack([ndi.correlate(x[..., d], kernel, mode="mirror") for d in range(3)], axis=-1), 0, 1)


def ref_gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return np.clip(skimage.filters.gaussian(img / 255.0, sigma=sigma, channel_axis=-1), 0, 1)


def ref_clipped_zoom(img: np.ndarray, factor: float) -> np.ndarray:
    h = img.shape[0]
    ch = int(np.ceil(h / factor))
    top = (h - ch) // 2
    out = ndi.zoom(img[top : top + ch, top : top + ch], (factor, factor, 1), order=1)
    trim = (out.shape[0] - h) // 2
    return out[trim : trim + h, trim : trim + h]


def ref_zoom_blur(img: np.ndarray, factors: np.ndarray) -> np.ndarray:
    x = (img / 255.0).astype(np.float32)
    out = np.zeros_like(x)
    for z in factors:
        out += ref_clipped_zoom(x, z)
    return np.clip((x + out) / (len(factors) + 1), 0, 1)


REFERENCES = {
    "brightness": ref_brightness,
    "saturate": ref_saturate,
    "contrast": ref_contrast,
    "pixelate": ref_pixelate,
    "jpeg_compression": ref_jpeg,
    "defocus_blur": ref_defocus,
    "gaussian_blur": ref_gaussian_blur,
    "zoom_blur": ref_zoom_blur,
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_deterministic_corruptions_match_reference(photos, name):
    x = torch.from_numpy(photos).permute(0, 3, 1, 2).float() / 255
    for severity in range(1, 6):
        ours = corrupt(x, name, severity).permute(0, 2, 3, 1).numpy()
        for img, out in zip(photos, ours, strict=False):
            ref = REFERENCES[name](img, CIFAR[name][severity - 1])
            mad = np.abs(out - ref).mean()
            assert mad <= 2 / 255, f"{name} severity {severity}: mean abs difference {mad * 255:.2f}/255"
            assert np.abs(out - ref).max() < 0.25


def test_glass_blur_shuffle_matches_reference_loop():
    """The pixel map equals the reference's loop run literally on an (H, W, 3) numpy array."""
    h = w = 12
    for delta, iterations in ((1, 2), (2, 2), (3, 1)):
        rng = np.random.default_rng(delta)
        n_rows = h - 2 * delta
        offsets = rng.integers(-delta, delta, size=(1, iterations, n_rows, n_rows, 2))
        img = np.arange(h * w * 3).reshape(h, w, 3) // 3  # every pixel holds its own index
        for it in range(iterations):
            for r, row in enumerate(range(h - delta, delta, -1)):
                for q, col in enumerate(range(w - delta, delta, -1)):
                    dx, dy = offsets[0, it, r, q]
                    hp, wp = row + dy, col + dx
                    img[row, col], img[hp, wp] = img[hp, wp], img[row, col]
        ours = glass_index(torch.from_numpy(offsets), h, w, delta)[0].view(h, w).numpy()
        np.testing.assert_array_equal(ours, img[..., 0])


def test_motion_blur_matches_numpy_shift_reference(photos):
    """Motion blur at a given angle equals the NumPy re-implementation of ImageMagick's (imagecorruptions)."""

    def shift(image, dx, dy):
        out = np.roll(image, (dy, dx), axis=(0, 1))
        if dx > 0:
            out[:, :dx] = out[:, dx : dx + 1]
        elif dx < 0:
            out[:, dx:] = out[:, dx - 1 : dx]
        if dy > 0:
            out[:dy] = out[dy : dy + 1]
        elif dy < 0:
            out[dy:] = out[dy - 1 : dy]
        return out

    def reference(image, radius, sigma, angle):
        width = 2 * radius + 1
        k = np.exp(-(np.arange(width) ** 2) / (2 * sigma**2))
        k /= k.sum()
        out = np.zeros_like(image)
        for i in range(width):
            dy = -int(np.ceil(i * np.sin(np.deg2rad(angle)) - 0.5))
            dx = -int(np.ceil(i * np.cos(np.deg2rad(angle)) - 0.5))
            if abs(dy) >= image.shape[0] or abs(dx) >= image.shape[1]:
                break
            out += k[i] * shift(image, dx, dy)
        return out

    x = torch.from_numpy(photos).permute(0, 3, 1, 2).double() / 255
    angles = torch.tensor([-37.0, 12.5])  # shallow: rows shift
    ours = motion_blur_at(x, 10, 2.5, angles).permute(0, 2, 3, 1).numpy()
    for img, out, a in zip(photos, ours, angles.tolist(), strict=False):
        np.testing.assert_allclose(out, reference(img / 255.0, 10, 2.5, a), atol=1e-9)


def test_steep_motion_blur_matches_numpy_shift_reference(photos):
    """Snow's angles (-135..-45 degrees) run on the transposed images: same result as tap by tap."""

    def reference(image, radius, sigma, angle):
        k = np.exp(-(np.arange(2 * radius + 1) ** 2) / (2 * sigma**2))
        k /= k.sum()
        out = np.zeros_like(image)
        h, w = image.shape[:2]
        for i, weight in enumerate(k):
            dy = -int(np.ceil(i * np.sin(np.deg2rad(angle)) - 0.5))
            dx = -int(np.ceil(i * np.cos(np.deg2rad(angle)) - 0.5))
            if abs(dy) >= h or abs(dx) >= w:
                break
            rows = np.clip(np.arange(h) - dy, 0, h - 1)
            cols = np.clip(np.arange(w) - dx, 0, w - 1)
            out += weight * image[rows][:, cols]
        return out

    x = torch.from_numpy(photos).permute(0, 3, 1, 2).double() / 255
    angles = torch.tensor([-130.0, -60.0])
    assert float(motion_blur_at(x, 10, 4.0, angles).sub(x).abs().mean()) > 0.01
    ours = motion_blur_at(x, 10, 4.0, angles).permute(0, 2, 3, 1).numpy()
    for img, out, a in zip(photos, ours, angles.tolist(), strict=False):
        np.testing.assert_allclose(out, reference(img / 255.0, 10, 4.0, a), atol=1e-9)


def test_affine_warp_and_displacement_match_scipy(photos):
    """The elastic transform's two samplers: OpenCV-style affine warp (reflect-101 border = scipy
    ``mirror``) and scipy ``map_coordinates(order=1, mode='reflect')``, at coordinates beyond the edges."""
    from robustcnn.methods.shifts._ops import displace, warp_affine

    x = torch.from_numpy(photos).permute(0, 3, 1, 2).double() / 255
    n, _, h, w = x.shape
    # output (x, y) -> source (x, y): a rotation by 0.2 rad about (3, 4), scaled by 1.1, shifted
    a = 1.1 * np.array([[np.cos(0.2), -np.sin(0.2)], [np.sin(0.2), np.cos(0.2)]])
    inverse = np.concatenate(
        [a, (np.array([3.0, 4.0]) - a @ np.array([3.0, 4.0]) + np.array([-2.5, 1.5]))[:, None]], axis=1
    )
    ours = warp_affine(x, torch.from_numpy(inverse)[None].expand(n, 2, 3))
    matrix = np.array([[inverse[1, 1], inverse[1, 0]], [inverse[0, 1], inverse[0, 0]]])  # in scipy's (row, col) order
    offset = np.array([inverse[1, 2], inverse[0, 2]])
    for img, out in zip(photos, ours, strict=False):
        for ch in range(3):
            ref = ndi.affine_transform(img[..., ch] / 255.0, matrix, offset, order=1, mode="mirror")
            np.testing.assert_allclose(out[ch].numpy(), ref, atol=1e-6)

    rng = np.random.default_rng(0)
    dy, dx = (torch.from_numpy(rng.uniform(-4, 4, size=(n, h, w))) for _ in range(2))
    ours = displace(x, dy, dx)
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    for i, img in enumerate(photos):
        coords = [yy + dy[i].numpy(), xx + dx[i].numpy()]
        for ch in range(3):
            ref = ndi.map_coordinates(img[..., ch] / 255.0, coords, order=1, mode="reflect")
            np.testing.assert_allclose(ours[i, ch].numpy(), ref, atol=1e-6)


@pytest.mark.parametrize("shape", [(12, 12), (9, 14), (1, 8)])
def test_affine_warp_far_beyond_the_edges_matches_scipy(shape):
    """Source coordinates several image sizes out: reflect-101 repeats every 2 (n - 1) pixels,
    so the warp folds them into one period instead of padding that far."""
    from robustcnn.methods.shifts._ops import warp_affine

    img = np.random.default_rng(0).random(shape)
    x = torch.from_numpy(img)[None, None]
    for linear in ([[1.0, 0.1], [0.05, 1.0]], [[3.0, 0.4], [-0.3, 2.5]]):
        for shift in (5.3, 30.4, -47.9):
            inverse = np.array([[*linear[0], shift], [*linear[1], -shift / 2]])
            ours = warp_affine(x, torch.from_numpy(inverse)[None])[0, 0].numpy()
            matrix = np.array([[inverse[1, 1], inverse[1, 0]], [inverse[0, 1], inverse[0, 0]]])
            ref = ndi.affine_transform(img, matrix, np.array([inverse[1, 2], inverse[0, 2]]), order=1, mode="mirror")
            np.testing.assert_allclose(ours, ref, atol=1e-9)


@pytest.mark.parametrize("shape, density", [((32, 32), 0.002), ((32, 32), 0.05), ((7, 40), 0.01), ((64, 9), 0.003)])
def test_spatter_edge_distance_matches_scipy(shape, density):
    """spatter's capped distance to the nearest edge pixel against scipy's exact transform,
    from dense edges to images with one or no edge pixel (all at the cap)."""
    from robustcnn.methods.shifts.weather import _distance_to

    edges = torch.rand(64, 1, *shape, generator=torch.Generator().manual_seed(0)) < density
    ours = _distance_to(edges, 20)
    for mask, out in zip(edges[:, 0].numpy(), ours[:, 0].numpy(), strict=False):
        ref = np.minimum(ndi.distance_transform_edt(~mask), 20) if mask.any() else np.full(shape, 20.0)
        np.testing.assert_allclose(out, ref, atol=1e-5)


def test_noise_statistics():
    grey = torch.full((4, 3, 32, 32), 0.5)
    gen = torch.Generator().manual_seed(0)
    for severity, c in enumerate((0.04, 0.06, 0.08, 0.09, 0.10), start=1):
        d = corrupt(grey, "gaussian_noise", severity, gen) - grey
        assert abs(d.mean()) < 0.005 and abs(d.std() / c - 1) < 0.05
    for severity, c in enumerate((500, 250, 100, 75, 50), start=1):
        out = corrupt(grey, "shot_noise", severity, gen)
        assert abs(out.mean() - 0.5) < 0.005 and abs(out.var() / (0.5 / c) - 1) < 0.08
        assert torch.allclose(out * c, (out * c).round(), atol=1e-3)  # counts of photons
    for severity, c in enumerate((0.01, 0.02, 0.03, 0.05, 0.07), start=1):
        out = corrupt(grey, "impulse_noise", severity, gen)
        zeros, ones = float((out == 0).float().mean()), float((out == 1).float().mean())
        assert abs((zeros + ones) / c - 1) < 0.2 and abs(zeros - ones) < c / 3
        assert bool(((out == 0) | (out == 1) | (out == 0.5)).all())
    for severity, c in enumerate((0.06, 0.1, 0.12, 0.16, 0.2), start=1):
        d = corrupt(grey, "speckle_noise", severity, gen) - grey
        assert abs(d.std() / (0.5 * c) - 1) < 0.05


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (3, 1, 28, 28), (2, 1, 8, 8), (1, 3, 20, 36)])
def test_every_corruption_any_size_grey_and_seeded(shape):
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(1))
    original = x.clone()
    for name in CORRUPTIONS:
        for severity in (1, 5):
            a = corrupt(x, name, severity, torch.Generator().manual_seed(3))
            b = corrupt(x, name, severity, torch.Generator().manual_seed(3))
            assert a.shape == x.shape and a.dtype == x.dtype, name
            assert bool(torch.isfinite(a).all()) and a.min() >= 0 and a.max() <= 1, name
            assert torch.equal(a, b), f"{name} is not reproducible with the same seed"
        if max(shape[-2:]) >= 28:
            assert (a - x).abs().mean() > 1e-3, f"{name} severity 5 leaves the image unchanged"
    assert torch.equal(x, original), "corrupt() modified its input"


def test_grey_colour_corruption_is_luma_of_rgb():
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    grey = corrupt(x, "saturate", 5)
    rgb = corrupt(x.expand(-1, 3, -1, -1).contiguous(), "saturate", 5)
    expected = (rgb * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    torch.testing.assert_close(grey, expected)
    torch.testing.assert_close(corrupt(x, "brightness", 3), (x + 0.15).clamp(0, 1))


def test_unit_range_check_accepts_both_zeros_and_one():
    x = torch.tensor([[[[0.0, -0.0], [1.0, 0.5]]]])
    assert torch.equal(corrupt(x, "contrast", 1), corrupt(x.abs(), "contrast", 1))
    assert torch.equal(corrupt(x.double(), "contrast", 1), corrupt(x.abs().double(), "contrast", 1))


def test_unclamped_contrast_stays_in_unit_range():
    """contrast skips the final clamp (IN_RANGE): try the values where lerp's rounding could leave
    [0, 1] if the claim were wrong: ends at 0 and 1, one float step inside them, and denormals."""
    gen = torch.Generator().manual_seed(0)
    edges = torch.tensor([0.0, 1.0, 1 - 2**-24, 2**-24, 1e-40, 0.5, 0.5 - 2**-25, 1 / 3])
    picks = edges[torch.randint(len(edges), (4096, 3, 4, 4), generator=gen)]
    mostly_one = torch.ones(4096, 3, 4, 4)
    mostly_one[:, :, 0, 0] = edges[torch.randint(len(edges), (4096, 3), generator=gen)]
    for x in (
        picks,
        mostly_one,
        torch.rand(512, 3, 8, 8, generator=gen),
        torch.rand(512, 3, 8, 8, generator=gen) ** 16,
    ):
        for severity in range(1, 6):
            for preset in ("cifar", "imagenet"):
                out = corrupt(x, "contrast", severity, preset=preset)
                assert 0 <= float(out.min()) and float(out.max()) <= 1, (severity, preset)
    assert IN_RANGE == {"contrast"}  # a corruption added here needs its own proof and test


def test_severity_orders_damage():
    x = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1).float()[None] / 255
    x = F.interpolate(x, size=(32, 32), mode="bilinear", antialias=True).clamp(0, 1)
    for name in ("gaussian_noise", "contrast", "defocus_blur", "zoom_blur", "fog", "pixelate"):
        gaps = [float((corrupt(x, name, s, torch.Generator().manual_seed(0)) - x).abs().mean()) for s in (1, 3, 5)]
        assert gaps[0] < gaps[1] < gaps[2], (name, gaps)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda x: corrupt(x, "rain", 1), "unknown corruption 'rain'"),
        (lambda x: corrupt(x, "fog", 0), "severity must be an integer from 1 to 5"),
        (lambda x: corrupt(x, "fog", 6), "severity must be an integer from 1 to 5"),
        (lambda x: corrupt(x, "fog", 2.0), "severity must be an integer from 1 to 5"),
        (lambda x: corrupt(x[0], "fog", 1), "shape (N, C, H, W)"),
        (lambda x: corrupt(x * 255, "fog", 1), "values in [0, 1]"),
        (lambda x: corrupt(x.index_fill(1, torch.tensor([1]), -1e-30), "fog", 1), "values in [0, 1]"),
        (lambda x: corrupt(x.index_fill(1, torch.tensor([1]), float("nan")), "fog", 1), "values in [0, 1]"),
        (lambda x: corrupt(x.index_fill(1, torch.tensor([1]), 1.0000001), "fog", 1), "values in [0, 1]"),
        (lambda x: corrupt(x.index_fill(1, torch.tensor([1]), float("-inf")), "fog", 1), "values in [0, 1]"),
        (lambda x: corrupt(x, "fog", 1, preset="tiny"), "unknown corruption preset"),
        (lambda x: corrupt(torch.rand(1, 2, 8, 8), "frost", 1), "grey or RGB"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(InvalidInputError, match=__import__("re").escape(message)):
        call(torch.rand(1, 3, 8, 8))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_for_deterministic_and_runs_random():
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for name in CORRUPTIONS:
        gen = torch.Generator(device="cuda").manual_seed(0)
        out = corrupt(x.cuda(), name, 3, gen)
        assert out.is_cuda and out.shape == x.shape
        if name not in REFERENCES:
            continue
        diff = (out.cpu() - corrupt(x, name, 3)).abs()
        if name == "jpeg_compression":
            # a DCT coefficient whose rounding flips between devices moves its 8x8 block by a few grey levels
            # (measured on an H200: 1.5% of pixels, at most 3/255)
            assert float(diff.max()) <= 4 / 255 and float((diff > 1 / 255).float().mean()) < 0.05, name
        else:
            assert float(diff.max()) <= 2e-3, (name, float(diff.max()))


def _plasma_reference(rng: np.random.Generator, mapsize: int, wibbledecay: float) -> np.ndarray:
    """One diamond-square map as the reference ``plasma_fractal`` computes it (float64 NumPy)."""
    m = np.zeros((mapsize, mapsize))
    step, wibble = mapsize, 100.0
    while step >= 2:
        half = step // 2
        corner = m[::step, ::step]
        square = corner + np.roll(corner, -1, axis=0)
        square = square + np.roll(square, -1, axis=1)
        m[half::step, half::step] = square / 4 + wibble * rng.uniform(-wibble, wibble, square.shape)
        dr, ul = m[half::step, half::step], m[::step, ::step]
        total = dr + np.roll(dr, 1, axis=0) + ul + np.roll(ul, -1, axis=1)
        m[::step, half::step] = total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)
        total = dr + np.roll(dr, 1, axis=1) + ul + np.roll(ul, -1, axis=0)
        m[half::step, ::step] = total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)
        step //= 2
        wibble /= wibbledecay
    m -= m.min()
    return m / m.max()


@pytest.mark.parametrize("wibbledecay", [3.0, 1.75])
def test_plasma_fractal_statistics_match_reference(wibbledecay):
    from robustcnn.methods.shifts.weather import diamond_square

    rng = np.random.default_rng(0)
    ref = np.stack([_plasma_reference(rng, 32, wibbledecay) for _ in range(400)])
    ours = diamond_square(400, 32, wibbledecay, torch.Generator().manual_seed(0), torch.device("cpu")).double().numpy()
    ours -= ours.min(axis=(1, 2), keepdims=True)  # the reference's rescaling to [0, 1], which fog folds into its blend
    ours /= ours.max(axis=(1, 2), keepdims=True)
    for stat in (
        np.mean,
        np.std,
        lambda m: np.abs(np.diff(m, axis=-1)).mean(),
        lambda m: np.abs(np.diff(m, axis=-2)).mean(),
    ):
        a, b = float(stat(ours)), float(stat(ref))
        assert abs(a / b - 1) < 0.05, (a, b)

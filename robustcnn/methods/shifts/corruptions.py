"""``corrupt()``: the 15 ImageNet-C corruptions and the 4 held-out ones (Hendrycks & Dietterich 2019),
five severities each, batched in torch on any device, for images of any size and grey or RGB.

Parameters follow the reference code of CIFAR-10-C (designed for 32x32 images) or ImageNet-C
(224x224): ``preset="auto"`` takes CIFAR-10-C's for images below 112 pixels (size =
``sqrt(H W)``) and ImageNet-C's from there. Parameters measured in pixels (blur radii and
sigmas, motion-blur length, glass-blur displacement, spatter and elastic scales) are multiplied
by ``size / 32`` or ``size / 224``; relative ones (noise levels, zoom factors, pixelation ratio,
JPEG quality, blend weights) are kept.
"""

from __future__ import annotations

import math

import torch

from ...errors import InvalidInputError
from . import blur, digital, jpeg, weather
from . import noise_corruptions as noise
from ._ops import luma
from ._random import Source

BENCHMARK: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
HELD_OUT: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
CORRUPTIONS: tuple[str, ...] = BENCHMARK + HELD_OUT
# defined on RGB: a grey image goes in as three equal channels and comes back as BT.601 luma
COLOUR = frozenset({"brightness", "saturate", "spatter", "frost"})
# outputs provably in [0, 1] without a clamp: contrast is torch.lerp(mean, x, c) with mean, x and
# c in [0, 1], and lerp's single-rounding formulas cannot leave [min, max] of its ends there
IN_RANGE = frozenset({"contrast"})
PRESETS = {"cifar": 32, "imagenet": 224}
AUTO_THRESHOLD = 112

_TABLE = {**noise.PARAMS, **blur.PARAMS, **weather.PARAMS, **digital.PARAMS, **jpeg.PARAMS}


def image_size(height: int, width: int) -> float:
    """The size that pixel parameters scale with: the geometric mean of height and width."""
    return math.sqrt(height * width)


def resolve_preset(height: int, width: int, preset: str = "auto") -> str:
    """``cifar`` or ``imagenet``: the parameter table used for (height, width) images."""
    if preset == "auto":
        return "cifar" if image_size(height, width) < AUTO_THRESHOLD else "imagenet"
    if preset not in PRESETS:
        raise InvalidInputError(f"unknown corruption preset '{preset}'; use auto, cifar or imagenet")
    return preset


def parameters(name: str, severity: int, preset: str) -> object:
    """The reference parameters of ``name`` at ``severity`` in the ``cifar`` or ``imagenet`` table."""
    _, cifar, imagenet = _TABLE[name]
    return (cifar if preset == "cifar" else imagenet)[severity - 1]


def check_name(name: str, severity: int) -> None:
    """Raise InvalidInputError for an unknown corruption or a severity outside 1..5."""
    if name not in _TABLE:
        raise InvalidInputError(f"unknown corruption '{name}'; known: {', '.join(CORRUPTIONS)}")
    if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 5:
        raise InvalidInputError(f"corruption severity must be an integer from 1 to 5, got {severity!r}")


def in_unit_range(x: torch.Tensor) -> bool:
    """Whether every value of the contiguous float32 tensor ``x`` is in [0, 1] (no NaN).

    Read as int32, the floats +0.0 ... 1.0 are exactly the bit patterns 0 ... 0x3F800000 (IEEE 754
    orders non-negative floats like their bits; negatives and NaNs fall outside), and an integer
    min/max pass is about 1.5x faster than a float one. Only when that says no (or -0.0 occurs)
    is the float check run."""
    low, high = torch.aminmax(x.view(torch.int32))
    if int(low) >= 0 and int(high) <= 0x3F800000:
        return True
    low, high = torch.aminmax(x)
    return bool(low >= 0) and bool(high <= 1)


def corrupt(
    images: torch.Tensor, name: str, severity: int, generator: Source = None, *, preset: str = "auto"
) -> torch.Tensor:
    """Corrupt (N, C, H, W) images in [0, 1] with corruption ``name`` at ``severity`` (1..5).

    Returns a tensor of the same shape, dtype and device, in [0, 1]. Random corruptions draw
    from ``generator``: a ``torch.Generator`` on the images' device (``None`` uses torch's global
    generator), or ``SampleStreams`` with one stream per image, which makes each image's output
    independent of the rest of the batch. Either way a seeded source gives identical output.
    """
    check_name(name, severity)
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise InvalidInputError("corrupt() takes a float tensor of shape (N, C, H, W)")
    n, c, h, w = images.shape
    if n == 0:
        return images.clone()
    colour = name in COLOUR
    if colour and c not in (1, 3):
        raise InvalidInputError(f"corruption '{name}' needs grey or RGB images, got {c} channels")
    table = resolve_preset(h, w, preset)
    fn = _TABLE[name][0]
    x = images.float().contiguous()  # e.g. a permuted NHWC array: the batched passes are several times faster on NCHW
    if not in_unit_range(x):
        raise InvalidInputError("corrupt() takes pixel values in [0, 1]; scale the images first")
    grey = colour and c == 1
    if grey:
        x = x.expand(-1, 3, -1, -1)
    out = fn(x, parameters(name, severity, table), image_size(h, w) / PRESETS[table], generator)
    if name not in IN_RANGE:
        # clamp in place unless the result shares memory with the caller's images (an identity corruption)
        out = (
            out.clamp(0, 1) if out.untyped_storage().data_ptr() == x.untyped_storage().data_ptr() else out.clamp_(0, 1)
        )
    if grey:
        out = luma(out)
    return out.to(images.dtype)

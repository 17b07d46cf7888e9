"""Default epsilon grids per kind of data, and the checks every user-given grid must pass.

Pixels live in [0, 1]. Grayscale data (MNIST-like) uses the MNIST threat models: L-inf up to
0.3 (Madry et al. 2017) and L2 up to 4; colour data uses L-inf up to 16/255 and L2 up to 2,
the L2 radii scaled by sqrt(pixels / 1024) for images larger than 32x32 (so 0.5 at CIFAR size
becomes 3.5 at 224x224, as in common ImageNet threat models).
"""

from __future__ import annotations

import math

from ...errors import InvalidInputError
from .geometry import NORMS

GRAY = {
    "linf": (0.0, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3),
    "l2": (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0),
}
COLOUR = {
    "linf": tuple(v / 255 for v in (0, 1, 2, 4, 6, 8, 12, 16)),
    "l2": (0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0),
}
HEADLINE = {"gray": {"linf": 0.3, "l2": 2.0}, "colour": {"linf": 8 / 255, "l2": 0.5}}


def _kind(shape: tuple[int, int, int]) -> str:
    return "gray" if shape[0] == 1 else "colour"


def _l2_scale(shape: tuple[int, int, int]) -> float:
    pixels = shape[1] * shape[2]
    return math.sqrt(pixels / 1024) if _kind(shape) == "colour" and pixels > 1024 else 1.0


def default_eps(norm: str, shape: tuple[int, int, int]) -> tuple[float, ...]:
    """The default grid for ``norm`` on images of ``shape`` (C, H, W)."""
    grid = (GRAY if _kind(shape) == "gray" else COLOUR)[norm]
    scale = _l2_scale(shape) if norm == "l2" else 1.0
    return tuple(round(v * scale, 4) for v in grid)


def default_headline(norm: str, shape: tuple[int, int, int]) -> float:
    value = HEADLINE[_kind(shape)][norm]
    return round(value * (_l2_scale(shape) if norm == "l2" else 1.0), 4)


def max_radius(norm: str, shape: tuple[int, int, int]) -> float:
    """The largest distance two images in [0, 1] can have: 1 for L-inf, sqrt(C*H*W) for L2."""
    return 1.0 if norm == "linf" else math.sqrt(shape[0] * shape[1] * shape[2])


def check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise InvalidInputError(f"unknown norm '{norm}'; use one of: {', '.join(NORMS)}")


def check_eps(
    norm: str, values: list[float] | tuple[float, ...], shape: tuple[int, int, int] | None = None
) -> tuple[float, ...]:
    """Validated, sorted, de-duplicated epsilons; raises one clear line on a bad grid."""
    check_norm(norm)
    try:
        grid = tuple(sorted({float(v) for v in values}))
    except (TypeError, ValueError):
        raise InvalidInputError(f"eps for {norm} must be a list of numbers, got {values!r}") from None
    if not grid:
        raise InvalidInputError(f"eps for {norm} is empty; give at least one epsilon, e.g. [0.0, 0.1]")
    if any(not math.isfinite(v) or v < 0 for v in grid):
        raise InvalidInputError(f"eps for {norm} must be finite and >= 0, got {list(values)}")
    limit = 1.0 if shape is None and norm == "linf" else (max_radius(norm, shape) if shape is not None else math.inf)
    if grid[-1] > limit:
        raise InvalidInputError(
            f"eps {grid[-1]:g} for {norm} exceeds the data range (pixels are in [0, 1], so at most {limit:.4g}); "
            "give epsilons in pixel units"
        )
    return grid

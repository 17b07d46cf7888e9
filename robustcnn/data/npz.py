"""``.npz`` datasets: ``x`` and ``y`` (evaluation split), optional ``x_train``/``y_train``,
``masks``/``masks_train`` (object masks), ``classes`` (names), and group attributes:
any other 1-D array of length N (``train_<name>`` for the training split).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..errors import InvalidInputError
from .base import ImageData, Split, images_from_array

RESERVED = {"x", "y", "x_train", "y_train", "masks", "masks_train", "classes", "ids", "ids_train"}


def load_npz(path: Path) -> ImageData:
    if not path.exists():
        raise InvalidInputError(f"dataset file not found: {path}")
    try:
        arrays = dict(np.load(path, allow_pickle=False))
    except Exception as exc:
        raise InvalidInputError(f"cannot read {path} as .npz: {exc}") from exc
    for key in ("x", "y"):
        if key not in arrays:
            raise InvalidInputError(f"{path} has no '{key}' array; it needs x (images) and y (labels)")
    test = _split(arrays, "", path)
    train = _split(arrays, "_train", path) if "x_train" in arrays else None
    labels = np.concatenate([test.y.numpy()] + ([train.y.numpy()] if train is not None else []))
    if "classes" in arrays:
        classes = [str(c) for c in arrays["classes"]]
    else:
        classes = [str(i) for i in range(int(labels.max()) + 1 if len(labels) else 0)]
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise InvalidInputError(f"{path}: labels must lie in 0..{len(classes) - 1}")
    return ImageData(path.stem, classes, test=test, train=train)


def _split(arrays: dict[str, np.ndarray], suffix: str, path: Path) -> Split:
    x = images_from_array(arrays[f"x{suffix}"], f"{path}:x{suffix}")
    y = arrays[f"y{suffix}"]
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise InvalidInputError(f"{path}: y{suffix} must be a 1-D integer array of labels")
    n = x.shape[0]
    if len(y) != n:
        raise InvalidInputError(f"{path}: x{suffix} has {n} images but y{suffix} has {len(y)} labels")
    prefix = "train_" if suffix else ""
    attrs = {}
    for key, arr in arrays.items():
        if key in RESERVED or arr.ndim != 1 or len(arr) != n:
            continue
        if suffix and key.startswith(prefix):
            attrs[key[len(prefix) :]] = arr
        elif not suffix and not key.startswith("train_"):
            attrs[key] = arr
    ids_key = f"ids{suffix}"
    ids = [str(i) for i in arrays[ids_key]] if ids_key in arrays else [f"{path.stem}{suffix}-{i}" for i in range(n)]
    masks = None
    if f"masks{suffix}" in arrays:
        masks = images_from_array(arrays[f"masks{suffix}"], f"{path}:masks{suffix}")[:, :1]
    return Split(x, torch.from_numpy(y.astype(np.int64)), ids, pd.DataFrame(attrs), masks)

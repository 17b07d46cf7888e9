"""``.npz`` datasets: ``x`` and ``y`` (evaluation split), optional ``x_train``/``y_train``,
``masks``/``masks_train`` (object masks), ``classes`` (names), and group attributes:
any other 1-D array of length N (``train_<name>`` for the training split).

Image arrays stored uncompressed (``np.savez``) are memory-mapped, so only the rows an audit
samples are read; compressed ones (``np.savez_compressed``) are read into memory as stored
(e.g. uint8) and converted to float32 only for the sampled rows.
"""

from __future__ import annotations

import hashlib
import struct
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from numpy.lib import format as npy_format

from ..errors import InvalidInputError
from .base import ImageData
from .index import DataIndex, SplitIndex, TensorSource, decode_sample
from .policy import Target

RESERVED = {"x", "y", "x_train", "y_train", "masks", "masks_train", "classes", "ids", "ids_train"}
VALIDATE_ROWS = 1024  # rows of a float image array checked for range at a time


class NpzSource(TensorSource):
    """Rows of an image array as stored in the file (uint8 or float, NCHW/NHWC), converted per read."""

    def __init__(self, path: Path, x: np.ndarray, masks: np.ndarray | None, label: str) -> None:
        self.path, self.raw, self.raw_masks, self.label = path, x, masks, label
        self._identity: str | None = None
        first = self._images(x[:1], f"{path}:{label}")
        self.shape = tuple(first.shape[1:])
        if np.issubdtype(x.dtype, np.floating):
            for start in range(0, len(x), VALIDATE_ROWS):
                self._images(x[start : start + VALIDATE_ROWS], f"{path}:{label}")

    @staticmethod
    def _images(rows: np.ndarray, source: str) -> torch.Tensor:
        from .base import images_from_array

        return images_from_array(np.array(rows), source)

    def __len__(self) -> int:
        return len(self.raw)

    def rows(self, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self._images(self.raw[positions], f"{self.path}:{self.label}")
        masks = None
        if self.raw_masks is not None:
            masks = self._images(self.raw_masks[positions], f"{self.path}:masks")[:, :1]
        return x, masks

    def identity(self) -> str:
        if self._identity is None:
            h = hashlib.sha256(self.label.encode())
            with open(self.path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            self._identity = h.hexdigest()
        return self._identity

    def probe(self, positions: list[int]) -> dict:
        c, h, w = self.shape
        return dict.fromkeys(positions, (c, (h, w)))


def index_npz(path: Path) -> DataIndex:
    if not path.exists():
        raise InvalidInputError(f"dataset file not found: {path}")
    try:
        with zipfile.ZipFile(path) as zf:
            headers = {name[:-4]: _header(zf, name) for name in zf.namelist() if name.endswith(".npy")}
            small = {k: _read_member(zf, k) for k, (shape, _, _) in headers.items() if len(shape) <= 1}
            images = {k: _image_member(path, zf, k) for k in headers if k in ("x", "x_train", "masks", "masks_train")}
    except InvalidInputError:
        raise
    except Exception as exc:
        raise InvalidInputError(f"cannot read {path} as .npz: {exc}") from exc
    arrays = {**small, **images}
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
    if len(labels) and labels.min() < 0:
        raise InvalidInputError(f"{path}: labels must be class indices 0, 1, ...; found {int(labels.min())}")
    if len(labels) and labels.max() >= len(classes):
        raise InvalidInputError(
            f"{path}: label {int(labels.max())} has no class name; 'classes' lists {len(classes)} (labels 0..{len(classes) - 1})"
        )
    return DataIndex(path.stem, classes, test, train)


def load_npz(path: Path) -> ImageData:
    """Every image of the file in memory as float32 (for training and small sets)."""
    index = index_npz(path)
    splits = {}
    for name, split in (("test", index.test), ("train", index.train)):
        if split is not None:
            c, h, w = split.source.shape  # type: ignore[attr-defined]
            splits[name], _ = decode_sample(split, None, 0, Target(c, (h, w)), index.skipped, [])
    return ImageData(index.name, index.classes, splits["test"], splits.get("train"))


def _header(zf: zipfile.ZipFile, name: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    with zf.open(name) as fh:
        version = npy_format.read_magic(fh)
        read = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        shape, fortran, dtype = read(fh)
    if dtype.hasobject:
        raise InvalidInputError(f"{name[:-4]} holds Python objects, which need pickle; store plain arrays")
    return shape, fortran, dtype


def _read_member(zf: zipfile.ZipFile, key: str) -> np.ndarray:
    with zf.open(f"{key}.npy") as fh:
        return npy_format.read_array(fh, allow_pickle=False)


def _image_member(path: Path, zf: zipfile.ZipFile, key: str) -> np.ndarray:
    """The array memory-mapped when stored uncompressed, else read into memory as stored."""
    info = zf.getinfo(f"{key}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        return _read_member(zf, key)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if local[:4] != b"PK\x03\x04":
            return _read_member(zf, key)
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = npy_format.read_magic(f)
        read = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        offset = f.tell()
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def _split(arrays: dict[str, np.ndarray], suffix: str, path: Path) -> SplitIndex:
    raw = arrays[f"x{suffix}"]
    if raw.ndim not in (3, 4):
        raise InvalidInputError(f"{path}:x{suffix}: images must have 3 or 4 dimensions, got shape {raw.shape}")
    y = arrays[f"y{suffix}"]
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise InvalidInputError(f"{path}: y{suffix} must be a 1-D integer array of labels")
    n = raw.shape[0]
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
    masks = arrays.get(f"masks{suffix}")
    source = NpzSource(path, raw, masks, f"x{suffix}")
    name = "train" if suffix else "test"
    return SplitIndex(torch.from_numpy(y.astype(np.int64)), ids, pd.DataFrame(attrs), source, name)

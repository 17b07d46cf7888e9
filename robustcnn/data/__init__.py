"""Datasets for audits: built-in sets, ImageFolder directories and .npz files, as one ``DatasetRef``.

Audits use ``DatasetRef.index()``: labels, ids and attributes of every item, images read only
for the items sampled. ``DatasetRef.load()`` decodes everything (training, small sets).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidInputError
from .base import ImageData, Split, convert_channels, stratified_sample
from .builtin import BUILTINS, load_builtin, register_builtin
from .index import DataIndex, LazySplit
from .policy import Policy, Target

__all__ = [
    "BUILTINS",
    "DataIndex",
    "DatasetRef",
    "ImageData",
    "LazySplit",
    "Policy",
    "Split",
    "Target",
    "convert_channels",
    "register_builtin",
    "stratified_sample",
]

DEFAULT_TRAIN_N = 5000
SKIPS_LISTED = 1000  # skipped files listed one by one in meta.json; the count covers all


@dataclass
class DatasetRef:
    """A dataset named by ``spec``: a built-in name (``mnist5k``, ``digits``, ``name?key=value``),
    a directory (ImageFolder layout) or an ``.npz`` file; ``policy`` says how images reach the
    model's input and ``train_n`` caps the training images a check may decode."""

    spec: str = "mnist5k"
    policy: Policy = field(default_factory=Policy)
    train_n: int | None = DEFAULT_TRAIN_N
    _cache: ImageData | None = field(default=None, repr=False)
    _index: DataIndex | None = field(default=None, repr=False)

    def load(self) -> ImageData:
        """Every image decoded in memory (as stored; no resize/crop policy)."""
        if self._cache is None:
            self._cache = self._load()
            if len(self._cache.test) == 0:
                raise InvalidInputError(f"dataset '{self.spec}' has no evaluation images")
        return self._cache

    def index(self) -> DataIndex:
        """The dataset as an index; no image of a folder or .npz file is decoded."""
        if self._index is None:
            path = Path(self.spec)
            if path.suffix == ".npz":
                from .npz import index_npz

                self._index = index_npz(path)
            elif path.is_dir():
                from .folder import index_folder

                self._index = index_folder(path)
            else:
                self._index = DataIndex.of(self.load())
            if len(self._index.test) == 0:
                raise InvalidInputError(f"dataset '{self.spec}' has no evaluation images")
        return self._index

    def _load(self) -> ImageData:
        path = Path(self.spec)
        if path.suffix == ".npz":
            from .npz import load_npz

            return load_npz(path)
        if path.is_dir():
            from .folder import load_folder

            return load_folder(path)
        name, _, query = self.spec.partition("?")
        if name in BUILTINS or ("/" not in name and not path.exists()):
            options = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
            return load_builtin(name, options)
        raise InvalidInputError(
            f"dataset not found: {self.spec} (expected a built-in name, a directory or an .npz file)"
        )

    def describe(self) -> dict:
        data = self.index()
        reasons: dict[str, int] = {}
        for skip in data.skipped:
            reasons[skip["reason"].split(":")[0]] = reasons.get(skip["reason"].split(":")[0], 0) + 1
        return {
            "spec": self.spec,
            "name": data.name,
            "fingerprint": data.identity(),
            "classes": data.classes,
            "n_test": len(data.test),
            "n_train": len(data.train) if data.train is not None else 0,
            "attributes": data.attributes,
            "notes": data.notes,
            **self.policy.to_dict(),
            "train_n": self.train_n,
            "skipped": {"count": len(data.skipped), "reasons": reasons, "files": data.skipped[:SKIPS_LISTED]},
        }

"""Datasets for audits: built-in sets, ImageFolder directories and .npz files, as one ``DatasetRef``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidInputError
from .base import ImageData, Split, convert_channels, stratified_sample
from .builtin import BUILTINS, load_builtin, register_builtin

__all__ = ["DatasetRef", "ImageData", "Split", "BUILTINS", "register_builtin", "stratified_sample", "convert_channels"]


@dataclass
class DatasetRef:
    """A dataset named by ``spec``: a built-in name (``mnist5k``, ``digits``, ``name?key=value``),
    a directory (ImageFolder layout) or an ``.npz`` file."""

    spec: str = "mnist5k"
    _cache: ImageData | None = field(default=None, repr=False)

    def load(self) -> ImageData:
        if self._cache is None:
            self._cache = self._load()
            if len(self._cache.test) == 0:
                raise InvalidInputError(f"dataset '{self.spec}' has no evaluation images")
        return self._cache

    def _load(self) -> ImageData:
        path = Path(self.spec)
        if path.suffix == ".npz":
            from .npz import load_npz

            return load_npz(path)
        if path.is_dir():
            from .folder import load_folder

            return load_folder(path)
        name, _, query = self.spec.partition("?")
        if name in BUILTINS or "/" not in name and not path.exists():
            options = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
            return load_builtin(name, options)
        raise InvalidInputError(
            f"dataset not found: {self.spec} (expected a built-in name, a directory or an .npz file)"
        )

    def describe(self) -> dict:
        data = self.load()
        return {
            "spec": self.spec,
            "name": data.name,
            "fingerprint": data.fingerprint(),
            "classes": data.classes,
            "n_test": len(data.test),
            "n_train": len(data.train) if data.train is not None else 0,
            "attributes": data.attributes,
            "notes": data.notes,
        }

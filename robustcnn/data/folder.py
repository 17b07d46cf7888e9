"""ImageFolder directories (one folder per class), with an optional ``metadata.csv`` of group attributes.

Layout: ``ROOT/<class>/<image>``; or ``ROOT/train/<class>/...`` and ``ROOT/test/<class>/...``
(``val`` is accepted for ``test``). ``metadata.csv`` at the root has columns
``path,label,<attribute...>`` with ``path`` relative to the root.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from ..errors import InvalidInputError
from .base import ImageData, Split

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def load_folder(root: Path) -> ImageData:
    if not root.is_dir():
        raise InvalidInputError(f"dataset directory not found: {root}")
    split_dirs = {name: root / name for name in ("train", "test", "val") if (root / name).is_dir()}
    if "test" not in split_dirs and "val" in split_dirs:
        split_dirs["test"] = split_dirs.pop("val")
    split_dirs.pop("val", None)
    if "test" in split_dirs:
        roots = split_dirs
    else:
        roots = {"test": root}
    classes = sorted({d.name for r in roots.values() for d in r.iterdir() if d.is_dir() and not d.name.startswith(".")})
    if not classes:
        raise InvalidInputError(f"{root} has no class folders; expected ROOT/<class>/<image files>")
    metadata = _read_metadata(root)
    notes: list[str] = []
    splits = {name: _load_split(r, root, classes, metadata, notes) for name, r in roots.items()}
    if len(splits["test"]) == 0:
        raise InvalidInputError(f"{roots['test']} holds no readable images")
    return ImageData(root.name, classes, test=splits["test"], train=splits.get("train"), notes=notes)


def _read_metadata(root: Path) -> pd.DataFrame | None:
    path = root / "metadata.csv"
    if not path.exists():
        return None
    try:
        meta = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise InvalidInputError(f"cannot read {path}: {exc}") from exc
    if "path" not in meta.columns:
        raise InvalidInputError(f"{path} needs a 'path' column (image path relative to {root})")
    meta["path"] = meta["path"].map(lambda p: Path(p).as_posix())
    if meta["path"].duplicated().any():
        raise InvalidInputError(f"{path} lists the same image more than once")
    return meta.set_index("path")


def _load_split(
    split_root: Path, root: Path, classes: list[str], metadata: pd.DataFrame | None, notes: list[str]
) -> Split:
    files: list[tuple[Path, int]] = []
    for label, cls in enumerate(classes):
        folder = split_root / cls
        if folder.is_dir():
            files += [(f, label) for f in sorted(folder.rglob("*")) if f.suffix.lower() in IMAGE_SUFFIXES]
    images = [_read_image(f) for f, _ in files]
    if not images:
        return Split(torch.zeros(0, 1, 1, 1), torch.zeros(0, dtype=torch.long), [])
    channels = 3 if any(img.shape[0] == 3 for img in images) else 1
    sizes = Counter(tuple(img.shape[1:]) for img in images)
    size = sizes.most_common(1)[0][0]
    if len(sizes) > 1:
        notes.append(f"{split_root.name}: images of {len(sizes)} sizes resized to {size[0]}x{size[1]}")
    x = torch.stack([_conform(img, channels, size) for img in images])
    rel = [f.relative_to(root).as_posix() for f, _ in files]
    attrs = pd.DataFrame(index=range(len(rel)))
    if metadata is not None:
        attr_cols = [c for c in metadata.columns if c != "label"]
        joined = metadata.reindex(rel)
        missing = int(joined[attr_cols[0]].isna().sum()) if attr_cols else 0
        if missing:
            notes.append(
                f"{split_root.name}: {missing} images have no metadata.csv row; their attributes are 'missing'"
            )
        attrs = joined[attr_cols].fillna("missing").reset_index(drop=True)
    return Split(x, torch.tensor([label for _, label in files], dtype=torch.long), rel, attrs)


def _read_image(path: Path) -> torch.Tensor:
    try:
        with Image.open(path) as img:
            img = img.convert("L" if img.mode in ("L", "1", "I", "I;16", "F") else "RGB")
            arr = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise InvalidInputError(f"cannot read image {path}: {exc}") from exc
    t = torch.from_numpy(arr.copy()).float() / 255.0
    return t[None] if t.dim() == 2 else t.permute(2, 0, 1)


def _conform(img: torch.Tensor, channels: int, size: tuple[int, int]) -> torch.Tensor:
    if img.shape[0] != channels:
        img = img.expand(channels, -1, -1)
    if tuple(img.shape[1:]) != size:
        img = F.interpolate(img[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0].clamp(0, 1)
    return img.contiguous()

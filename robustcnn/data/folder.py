"""ImageFolder directories (one folder per class), with an optional ``metadata.csv`` of group attributes.

Layout: ``ROOT/<class>/<image>``; or ``ROOT/train/<class>/...`` and ``ROOT/test/<class>/...``
(``val`` is accepted for ``test``). ``metadata.csv`` at the root has columns
``path,label,<attribute...>`` with ``path`` relative to the root.

``index_folder`` lists the files (paths, labels, attributes, sizes and mtimes) without opening
any image; audits decode only the images they sample. ``load_folder`` decodes every image
(for training and small folders).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import torch

from ..errors import InvalidInputError
from .base import ImageData
from .files import IMAGE_SUFFIXES, FileSource, list_files
from .index import BadImage, DataIndex, SplitIndex, decode_sample
from .policy import Target

__all__ = ["IMAGE_SUFFIXES", "index_folder", "load_folder"]


def index_folder(root: Path) -> DataIndex:
    """The folder as an index; unusable files found while listing are recorded in ``skipped``."""
    if not root.is_dir():
        raise InvalidInputError(f"dataset directory not found: {root}")
    split_dirs = {name: root / name for name in ("train", "test", "val") if (root / name).is_dir()}
    if "test" not in split_dirs and "val" in split_dirs:
        split_dirs["test"] = split_dirs.pop("val")
    split_dirs.pop("val", None)
    roots = split_dirs if "test" in split_dirs else {"test": root}
    classes = sorted({d.name for r in roots.values() for d in r.iterdir() if d.is_dir() and not d.name.startswith(".")})
    if not classes:
        raise InvalidInputError(f"{root} has no class folders; expected ROOT/<class>/<image files>")
    metadata = _read_metadata(root)
    notes: list[str] = []
    skipped: list[dict] = []
    splits = {name: _index_split(name, r, root, classes, metadata, notes, skipped) for name, r in roots.items()}
    if len(splits["test"]) == 0:
        raise InvalidInputError(f"{roots['test']} holds no image files{_skip_hint(skipped)}")
    return DataIndex(root.name, classes, splits["test"], splits.get("train"), notes, skipped)


def load_folder(root: Path) -> ImageData:
    """Every image of the folder, decoded at the most common size (3 channels if any image has colour)."""
    index = index_folder(root)
    splits = {}
    for name, split in (("test", index.test), ("train", index.train)):
        if split is None:
            continue
        probes = split.source.probe(list(range(len(split))))
        for p, result in probes.items():
            if isinstance(result, BadImage):
                split.mark_bad(p, str(result), index.skipped)
        good = [r for r in probes.values() if not isinstance(r, BadImage)]
        if not good:
            if name == "test":
                raise InvalidInputError(f"{root} holds no readable images{_skip_hint(index.skipped)}")
            continue
        channels = 3 if any(c == 3 for c, _ in good) else 1
        sizes = Counter(size for _, size in good)
        size = sizes.most_common(1)[0][0]
        if len(sizes) > 1:
            index.notes.append(f"{name}: images of {len(sizes)} sizes resized to {size[0]}x{size[1]}")
        splits[name], _ = decode_sample(split, None, 0, Target(channels, size), index.skipped, [])
    if index.skipped:
        index.notes.append(f"skipped {len(index.skipped)} unusable files{_skip_hint(index.skipped)}")
    return ImageData(index.name, index.classes, splits["test"], splits.get("train"), index.notes)


def _skip_hint(skipped: list[dict]) -> str:
    if not skipped:
        return ""
    first = skipped[0]
    return f" ({len(skipped)} skipped, e.g. {first['file']}: {first['reason']})"


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


def _index_split(
    name: str,
    split_root: Path,
    root: Path,
    classes: list[str],
    metadata: pd.DataFrame | None,
    notes: list[str],
    skipped: list[dict],
) -> SplitIndex:
    files: list[tuple[Path, int, int]] = []
    labels: list[int] = []
    bad: list[tuple[Path, str]] = []
    empty = []
    for label, cls in enumerate(classes):
        folder = split_root / cls
        found = list_files(folder, bad) if folder.is_dir() else []
        if not found:
            empty.append(cls)
        files += found
        labels += [label] * len(found)
    skipped += [{"split": name, "file": _relative(path, root), "reason": reason} for path, reason in bad]
    if empty and files:
        notes.append(
            f"{name}: {len(empty)} classes have no images ({', '.join(empty[:10])}{', ...' if len(empty) > 10 else ''})"
        )
    rel = [_relative(path, root) for path, _, _ in files]
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
    source = FileSource(root, rel, [(size, mtime) for _, size, mtime in files])
    return SplitIndex(torch.tensor(labels, dtype=torch.long), rel, attrs, source, name)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()

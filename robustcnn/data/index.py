"""Datasets as an index first, images second.

A ``SplitIndex`` holds what is cheap to know about every item of a split (label, id, group
attributes) and an ``ImageSource`` that reads item ``i`` on demand. Samples are drawn from the
index; only the drawn items are ever decoded, straight to the model's input (``Target``).
An item that cannot be read is skipped, recorded, and the sample is drawn again without it, so
the same folder and seed always give the same sample of readable images.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd
import torch

from .._runtime import release_free_memory
from ..errors import InvalidInputError
from .base import ClassesAndAttributes, ImageData, Split, stratified_sample
from .policy import Target, conform


class BadImage(Exception):
    """An item that cannot be used; the message is the one-line reason."""


# items already read (position -> image and mask, or why not) and the notes reading them wrote
Decoded = tuple[dict[int, "tuple[torch.Tensor, torch.Tensor | None] | BadImage"], list[str]]


class ImageSource(Protocol):
    """The images of one split, addressed by position."""

    def __len__(self) -> int: ...

    def identity(self) -> str:
        """A digest of the stored content (without decoding every image), for fingerprints."""

    def probe(self, positions: list[int]) -> dict[int, tuple[int, tuple[int, int]] | BadImage]:
        """Channels and (H, W) of each item as stored, or why it cannot be read; cheap (headers)."""

    def read(
        self, positions: list[int], target: Target, notes: list[str]
    ) -> dict[int, tuple[torch.Tensor, torch.Tensor | None] | BadImage]:
        """Each item as a (C, H, W) image at ``target`` plus its (1, H, W) mask or None, or why not."""


class TensorSource:
    """Images already in memory: (N, C, H, W) float32 in [0, 1], optional masks."""

    def __init__(self, x: torch.Tensor, masks: torch.Tensor | None = None) -> None:
        self.x, self.masks = x, masks
        self._identity: str | None = None

    def __len__(self) -> int:
        return self.x.shape[0]

    def rows(self, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        t = torch.as_tensor(positions, dtype=torch.long)
        return self.x[t], None if self.masks is None else self.masks[t]

    def identity(self) -> str:
        if self._identity is None:
            h = hashlib.sha256(self.x.numpy().tobytes())
            if self.masks is not None:
                h.update(self.masks.numpy().tobytes())
            self._identity = h.hexdigest()
        return self._identity

    def probe(self, positions: list[int]) -> dict[int, tuple[int, tuple[int, int]] | BadImage]:
        c, h, w = self.x.shape[1:]
        return dict.fromkeys(positions, (c, (h, w)))

    def read(
        self, positions: list[int], target: Target, notes: list[str]
    ) -> dict[int, tuple[torch.Tensor, torch.Tensor | None] | BadImage]:
        out: dict[int, tuple[torch.Tensor, torch.Tensor | None] | BadImage] = {}
        for start in range(0, len(positions), 256):
            chunk = positions[start : start + 256]
            x, masks = self.rows(chunk)
            x, masks = conform(x, masks, target, notes)
            for j, p in enumerate(chunk):
                out[p] = (x[j], None if masks is None else masks[j])
        return out


@dataclass
class SplitIndex:
    """One split as an index: labels ``y``, ``ids``, ``attrs`` per item, and where the images are."""

    y: torch.Tensor
    ids: list[str]
    attrs: pd.DataFrame
    source: ImageSource
    name: str = "test"
    bad: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.y.shape != (n,) or len(self.source) != n:
            raise InvalidInputError(f"{self.name}: {len(self.source)} images but {len(self.y)} labels and {n} ids")
        if self.attrs.empty and len(self.attrs.columns) == 0:
            self.attrs = pd.DataFrame(index=range(n))
        self.attrs = self.attrs.reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.ids)

    def readable(self) -> np.ndarray:
        """Positions not (yet) known to be unreadable."""
        keep = np.ones(len(self), dtype=bool)
        keep[list(self.bad)] = False
        return np.flatnonzero(keep)

    def draw(self, n: int | None, seed: int) -> np.ndarray:
        """A class-stratified, seeded sample of ``n`` readable positions (all of them if ``n`` is None)."""
        alive = self.readable()
        if n is None:
            return alive
        return alive[stratified_sample(self.y[torch.from_numpy(alive)], n, seed)]

    def mark_bad(self, position: int, reason: str, skipped: list[dict]) -> None:
        self.bad[position] = reason
        skipped.append({"split": self.name, "file": self.ids[position], "reason": reason})

    def identity(self, h: hashlib._Hash) -> None:
        h.update(self.name.encode())
        h.update("\n".join(self.ids).encode())
        h.update(self.y.numpy().tobytes())
        h.update(self.attrs.to_csv(index=False).encode())
        h.update(self.source.identity().encode())


@dataclass
class DataIndex(ClassesAndAttributes):
    """A dataset as an index: class names, the test split, an optional train split, notes and skips."""

    name: str
    classes: list[str]
    test: SplitIndex
    train: SplitIndex | None = None
    notes: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    _identity: str | None = field(default=None, repr=False)

    def identity(self) -> str:
        """sha256 of the index (ids, labels, attributes) and of each source's stored content."""
        if self._identity is None:
            h = hashlib.sha256(repr(self.classes).encode())
            for split in (self.train, self.test):
                if split is None:
                    h.update(b"none")
                else:
                    split.identity(h)
            self._identity = h.hexdigest()
        return self._identity

    @classmethod
    def of(cls, data: ImageData) -> DataIndex:
        """Index an in-memory dataset (built-in sets)."""

        def split_index(split: Split, name: str) -> SplitIndex:
            return SplitIndex(split.y, split.ids, split.attrs, TensorSource(split.x, split.masks), name)

        train = split_index(data.train, "train") if data.train is not None else None
        return cls(data.name, data.classes, split_index(data.test, "test"), train, list(data.notes))


def probe_sample(
    split: SplitIndex, n: int | None, seed: int, skipped: list[dict]
) -> dict[int, tuple[int, tuple[int, int]]]:
    """Draw the sample and read the headers of its items; unreadable ones are skipped and the draw repeated.

    Returns the stored (channels, (H, W)) of each item of the final sample, in sample order.
    """
    known: dict[int, tuple[int, tuple[int, int]]] = {}
    while True:
        positions = [int(p) for p in split.draw(n, seed)]
        new = [p for p in positions if p not in known]
        failed = False
        for p, result in split.source.probe(new).items():
            if isinstance(result, BadImage):
                split.mark_bad(p, str(result), skipped)
                failed = True
            else:
                known[p] = result
        if not failed:
            return {p: known[p] for p in positions}


def decode_sample(
    split: SplitIndex,
    n: int | None,
    seed: int,
    target: Target,
    skipped: list[dict],
    notes: list[str],
    first: np.ndarray | None = None,
    decoded: Decoded | None = None,
) -> tuple[Split, np.ndarray]:
    """Decode the sample at ``target``; unreadable items are skipped and replaced by a fresh draw.

    ``first`` is a draw already made (e.g. by ``probe_sample``), reused to avoid drawing twice;
    ``decoded`` holds items of it already read at ``target`` (``read`` of some positions and the
    notes that reading wrote), which are not read again.
    Returns the split and the positions of its items in the index.
    """
    images: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}
    done: list[str] = []
    if decoded is not None:
        images = {p: r for p, r in decoded[0].items() if not isinstance(r, BadImage)}
        done = list(decoded[1])
        for p, r in decoded[0].items():
            if isinstance(r, BadImage):
                split.mark_bad(p, str(r), skipped)
        if len(images) < len(decoded[0]):
            first = None
    positions = first
    while True:
        if positions is None:
            positions = split.draw(n, seed)
        new = [int(p) for p in positions if int(p) not in images]
        failed = False
        for p, result in split.source.read(new, target, done).items():
            if isinstance(result, BadImage):
                split.mark_bad(p, str(result), skipped)
                failed = True
            else:
                images[p] = result
        if not failed:
            break
        positions = None
    for text, count in Counter(re.sub(r"resized \d+x\d+ to", "stretched to", t) for t in done).items():
        notes.append(f"{split.name}: {text} ({count} images)")
    if len(positions) == 0 and split.name == "test" and split.bad:
        first_bad = next(iter(split.bad.values()))
        raise InvalidInputError(
            f"the {split.name} split holds no readable images; {len(split.bad)} skipped, e.g. {first_bad}"
        )
    return _split_of(split, [int(p) for p in positions], images, target), np.asarray(positions, dtype=np.int64)


def _split_of(split: SplitIndex, positions: list[int], images: dict, target: Target) -> Split:
    if not positions:
        return Split(torch.zeros(0, target.channels, *target.size), torch.zeros(0, dtype=torch.long), [])
    # copied image by image into one tensor, each released once copied: torch.stack would hold every
    # image twice at its peak (a 1,000-image training split at 224x224: 1.2 GB instead of 0.6 GB)
    first_image, first_mask = images[positions[0]]
    x = torch.empty((len(positions), *first_image.shape), dtype=first_image.dtype)
    with_masks = all(images[p][1] is not None for p in positions)
    masks = torch.empty((len(positions), *first_mask.shape), dtype=first_mask.dtype) if with_masks else None
    for i, p in enumerate(positions):
        image, mask = images.pop(p)
        x[i] = image
        if masks is not None:
            masks[i] = mask
    release_free_memory()
    t = torch.as_tensor(positions, dtype=torch.long)
    return Split(
        x, split.y[t], [split.ids[p] for p in positions], split.attrs.iloc[positions].reset_index(drop=True), masks
    )


class LazySplit:
    """A split decoded on first use of its images, labels, ids or attributes, then kept in memory.

    ``len()`` is known without decoding; it is the planned size (``cap`` items drawn class-stratified
    with ``seed``), less any unreadable files found while decoding that no other file could replace.
    Labels, ids and attributes decode too, so they always describe the images a check gets.
    Memory once decoded: len x C x H x W x 4 bytes (float32) at the target size.
    """

    def __init__(
        self, split: SplitIndex, cap: int | None, seed: int, target: Target, skipped: list[dict], notes: list[str]
    ) -> None:
        self._index, self._cap, self._seed, self._target = split, cap, seed, target
        self._skipped, self._notes = skipped, notes
        self._planned = len(split.draw(cap, seed))
        self._split: Split | None = None
        self._decoding: Future[Split] | None = None
        self._lock = threading.Lock()
        if cap is not None and cap < len(split.readable()):
            notes.append(
                f"{split.name}: a class-stratified sample of {cap} of {len(split.readable())} images (train_n)"
            )

    @property
    def decoded(self) -> bool:
        return self._split is not None

    def materialise(self) -> Split:
        with self._lock:
            if self._split is None:
                self._split = self._decoding.result() if self._decoding is not None else self._decode()
        return self._split

    def prefetch(self) -> None:
        """Start decoding in a background thread, so that it overlaps with model work; the first read
        waits for it (and raises what it raised). The result is the same as decoding on first use."""
        with self._lock:
            if self._split is None and self._decoding is None:
                pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="robustcnn-train")
                self._decoding = pool.submit(self._decode)
                pool.shutdown(wait=False)

    def _decode(self) -> Split:
        return decode_sample(self._index, self._cap, self._seed, self._target, self._skipped, self._notes)[0]

    def __len__(self) -> int:
        return len(self._split) if self._split is not None else self._planned

    x = property(lambda self: self.materialise().x)
    y = property(lambda self: self.materialise().y)
    ids = property(lambda self: self.materialise().ids)
    attrs = property(lambda self: self.materialise().attrs)
    masks = property(lambda self: self.materialise().masks)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self._target.channels, *self._target.size)

    def subset(self, index: np.ndarray | list[int]) -> Split:
        return self.materialise().subset(index)

"""In-memory image datasets: splits of [0, 1] NCHW float32 images, labels and group attributes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..errors import InvalidInputError


@dataclass
class Split:
    """One split: images ``x`` (N, C, H, W) in [0, 1], labels ``y``, per-sample ids and attributes.

    ``attrs`` holds one column per group attribute (e.g. ``color``); ``masks`` optional
    object masks (N, 1, H, W) in [0, 1] marking the object (1) versus background (0).
    """

    x: torch.Tensor
    y: torch.Tensor
    ids: list[str]
    attrs: pd.DataFrame = field(default_factory=pd.DataFrame)
    masks: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.x.dim() != 4:
            raise InvalidInputError(f"images must be 4-D (N, C, H, W), got shape {tuple(self.x.shape)}")
        n = self.x.shape[0]
        if self.y.shape != (n,) or len(self.ids) != n:
            raise InvalidInputError(f"{n} images but {len(self.y)} labels and {len(self.ids)} ids")
        if self.attrs.empty and len(self.attrs.columns) == 0:
            self.attrs = pd.DataFrame(index=range(n))
        self.attrs = self.attrs.reset_index(drop=True)
        if len(self.attrs) != n:
            raise InvalidInputError(f"{n} images but {len(self.attrs)} attribute rows")

    def __len__(self) -> int:
        return self.x.shape[0]

    def subset(self, index: np.ndarray | list[int]) -> Split:
        idx = np.asarray(index, dtype=np.int64)
        t = torch.from_numpy(idx)
        return Split(
            x=self.x[t],
            y=self.y[t],
            ids=[self.ids[i] for i in idx],
            attrs=self.attrs.iloc[idx].reset_index(drop=True),
            masks=None if self.masks is None else self.masks[t],
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x.shape[1:])  # type: ignore[return-value]


@dataclass
class ImageData:
    """A dataset: class names, an evaluation (test) split and an optional training split."""

    name: str
    classes: list[str]
    test: Split
    train: Split | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def attributes(self) -> list[str]:
        return list(self.test.attrs.columns)

    def adapted(self, channels: int, size: tuple[int, int] | None) -> ImageData:
        """The same data converted to ``channels`` and resized to ``size`` (H, W) if given."""
        notes = list(self.notes)
        test = adapt_split(self.test, channels, size, notes, "test")
        train = adapt_split(self.train, channels, size, notes, "train") if self.train is not None else None
        if test is self.test and train is self.train:
            return self
        return ImageData(self.name, self.classes, test, train, notes)


def adapt_split(split: Split, channels: int, size: tuple[int, int] | None, notes: list[str], label: str) -> Split:
    x, masks = split.x, split.masks
    c, h, w = split.shape
    if c != channels:
        x = convert_channels(x, channels)
        notes.append(f"{label}: converted {c} to {channels} channels")
    if size is not None and (h, w) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
        if masks is not None:
            masks = F.interpolate(masks, size=tuple(size), mode="bilinear", align_corners=False).clamp(0, 1)
        notes.append(f"{label}: resized {h}x{w} to {size[0]}x{size[1]} (bilinear, antialiased)")
    if x is split.x and masks is split.masks:
        return split
    return Split(x.contiguous(), split.y, split.ids, split.attrs, masks)


def convert_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    c = x.shape[1]
    if c == channels:
        return x
    if c == 1:
        return x.expand(-1, channels, -1, -1).contiguous()
    if c == 3 and channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype).view(1, 3, 1, 1)
        return (x * weights).sum(dim=1, keepdim=True)
    raise InvalidInputError(f"cannot convert {c}-channel images to the model's {channels} channels")


def stratified_sample(y: torch.Tensor, n: int, seed: int) -> np.ndarray:
    """Indices of ``n`` samples drawn per class in proportion to class counts (largest remainder), seeded."""
    labels = y.numpy()
    total = len(labels)
    if n >= total:
        return np.arange(total)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * n / total
    take = np.floor(quota).astype(int)
    remainder = n - take.sum()
    order = np.argsort(-(quota - take), kind="stable")
    take[order[:remainder]] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take, strict=False)]
    return np.sort(np.concatenate(chosen))


def images_from_array(x: np.ndarray, source: str) -> torch.Tensor:
    """Convert uint8 N,H,W[,C] or float N,C,H,W / N,H,W,C arrays to float32 NCHW in [0, 1]."""
    if x.ndim == 3:
        x = x[:, None, :, :] if x.dtype != np.uint8 else x[..., None]
    if x.ndim != 4:
        raise InvalidInputError(f"{source}: images must have 3 or 4 dimensions, got shape {x.shape}")
    if x.dtype == np.uint8:
        if x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
            x = x.transpose(0, 3, 1, 2)
        t = torch.from_numpy(np.ascontiguousarray(x)).float() / 255.0
    elif np.issubdtype(x.dtype, np.floating):
        if x.shape[1] not in (1, 3, 4) and x.shape[-1] in (1, 3, 4):
            x = x.transpose(0, 3, 1, 2)
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if not torch.isfinite(t).all():
            raise InvalidInputError(f"{source}: images contain NaN or infinite values")
        if t.numel() and (t.min() < 0 or t.max() > 1):
            raise InvalidInputError(
                f"{source}: float images must lie in [0, 1], found [{t.min():.3g}, {t.max():.3g}]; "
                "scale them or store uint8"
            )
    else:
        raise InvalidInputError(f"{source}: unsupported image dtype {x.dtype}; use uint8 or float")
    if t.shape[1] == 4:
        t = t[:, :3]
    return t.contiguous()

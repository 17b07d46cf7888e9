"""How a stored image becomes a model input: channels, an optional resize/centre-crop, and the input size.

The resize/crop policy follows torchvision's evaluation transforms (``Resize(S)`` scales the
shorter side to ``S`` keeping the aspect ratio; ``CenterCrop(H, W)`` cuts the centre, padding
with zeros when the image is smaller): image files are resized by PIL exactly as torchvision's
transforms resize a PIL image; in-memory arrays by torchvision's antialiased tensor resize.
Whatever the policy leaves at another size than the
model's input is then stretched to it (bilinear, antialiased), as in-memory sets always were.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F
from PIL import Image

from .base import convert_channels

ImageLike = TypeVar("ImageLike", torch.Tensor, Image.Image)


@dataclass(frozen=True)
class Policy:
    """``resize``: shorter side in pixels; ``center_crop``: (H, W). ``None`` leaves that step out."""

    resize: int | None = None
    center_crop: tuple[int, int] | None = None

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The (H, W) an image of ``size`` has after this policy, before the final stretch."""
        if self.center_crop is not None:
            return self.center_crop
        if self.resize is None:
            return size
        h, w = size
        short, long = (h, w) if h <= w else (w, h)
        scaled = (self.resize, int(self.resize * long / short))
        return scaled if h <= w else (scaled[1], scaled[0])

    def to_dict(self) -> dict:
        return {"resize": self.resize, "center_crop": list(self.center_crop) if self.center_crop else None}


@dataclass(frozen=True)
class Target:
    """What the model takes: ``channels`` and ``size`` (H, W), reached with ``policy``."""

    channels: int
    size: tuple[int, int]
    policy: Policy = Policy()


def conform(
    x: torch.Tensor,
    masks: torch.Tensor | None,
    target: Target,
    notes: list[str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Bring a batch (N, C, H, W) of [0, 1] images (and their object masks) to ``target``.

    ``notes`` receives one line per conversion done. Images already at the target come back unchanged.
    """
    c = x.shape[1]
    if c != target.channels:
        x = convert_channels(x, target.channels)
        _note(notes, f"converted {c} to {target.channels} channels")
    x, masks = apply_policy(x, masks, target.policy, notes)
    now = tuple(x.shape[-2:])
    if now != tuple(target.size):
        x = F.interpolate(x, size=tuple(target.size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
        if masks is not None:
            masks = F.interpolate(masks, size=tuple(target.size), mode="bilinear", align_corners=False).clamp(0, 1)
        _note(notes, f"resized {now[0]}x{now[1]} to {target.size[0]}x{target.size[1]} (bilinear, antialiased)")
    return x, masks


def apply_policy(
    x: ImageLike,
    masks: torch.Tensor | None,
    policy: Policy,
    notes: list[str] | None = None,
) -> tuple[ImageLike, torch.Tensor | None]:
    """Resize the shorter side, then centre-crop, with torchvision's functions: a PIL image is
    resized by PIL (bilinear), exactly as torchvision's transforms do; a tensor with antialiasing."""
    if policy.resize is None and policy.center_crop is None:
        return x, masks
    from torchvision.transforms.v2 import functional as TF  # imported only when a policy is asked for

    if policy.resize is not None:
        x = TF.resize(x, [policy.resize], antialias=True)
        x = x.clamp(0, 1) if isinstance(x, torch.Tensor) else x
        masks = None if masks is None else TF.resize(masks, [policy.resize], antialias=False).clamp(0, 1)
        _note(notes, f"resized the shorter side to {policy.resize}")
    if policy.center_crop is not None:
        x = TF.center_crop(x, list(policy.center_crop))
        masks = None if masks is None else TF.center_crop(masks, list(policy.center_crop))
        _note(notes, f"centre-cropped to {policy.center_crop[0]}x{policy.center_crop[1]}")
    return x, masks


def _note(notes: list[str] | None, text: str) -> None:
    if notes is not None:
        notes.append(text)

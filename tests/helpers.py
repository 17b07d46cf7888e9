"""Builders for real on-disk fixtures: model files of every supported format and datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from robustcnn.models.zoo import MnistCNN


def small_net(in_channels: int = 1, num_classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return MnistCNN(in_channels=in_channels, num_classes=num_classes, width=8).eval()


def save_torchscript(net: nn.Module, path: Path) -> Path:
    torch.jit.save(torch.jit.script(net), str(path))
    return path


def save_exported(net: nn.Module, path: Path, shape: tuple[int, ...] = (2, 1, 28, 28)) -> Path:
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(net, (torch.rand(shape),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))
    return path


def write_image_folder(
    root: Path,
    images: torch.Tensor,
    labels: torch.Tensor,
    classes: list[str],
    attrs: dict[str, list[str]] | None = None,
) -> Path:
    """Write (N, C, H, W) [0, 1] images as PNGs in ROOT/<class>/ with an optional metadata.csv."""
    rows = []
    for i, (img, label) in enumerate(zip(images, labels, strict=False)):
        folder = root / classes[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        arr = (img.clamp(0, 1) * 255).round().byte().numpy()
        arr = arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)
        name = f"{i:05d}.png"
        Image.fromarray(arr).save(folder / name)
        rows.append((f"{classes[int(label)]}/{name}", classes[int(label)]))
    if attrs:
        lines = ["path,label," + ",".join(attrs)]
        for i, (path, label) in enumerate(rows):
            lines.append(f"{path},{label}," + ",".join(str(v[i]) for v in attrs.values()))
        (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return root


def write_npz(path: Path, x: np.ndarray, y: np.ndarray, **extra: np.ndarray) -> Path:
    np.savez(path, x=x, y=y, **extra)
    return path

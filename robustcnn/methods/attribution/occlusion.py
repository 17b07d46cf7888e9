"""``occlusion``: occlusion sensitivity maps (Zeiler & Fergus 2014) and where the model looks.

A baseline-valued square slides over each image; the map records the drop in the true class's
probability, averaged over the windows covering each pixel (captum's ``Occlusion``). With object
masks, the share of positive sensitivity falling outside the object tells whether the model
looks at the cow or at the grass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from captum.attr import Occlusion

from ...errors import InvalidInputError
from ...models import AuditedModel
from ...results.plots import figure_png

MAP_SIDE = 64  # maps kept for figures are average-pooled to at most this many pixels a side


@dataclass
class OcclusionConfig:
    """Options of ``[checks.occlusion]``; 0 picks the window (about a seventh of the image side) and stride (half the window)."""

    window: int = 0
    stride: int = 0
    baseline: float | str = 0.5
    examples: int = 8

    def validate(self) -> None:
        for name in ("window", "stride", "examples"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise InvalidInputError(
                    f"occlusion {name} must be a non-negative integer (0 = automatic for window/stride), got {v!r}"
                )
        if self.window and self.stride and self.stride > self.window:
            raise InvalidInputError(
                f"occlusion stride {self.stride} exceeds window {self.window}, which leaves pixels never occluded; use stride <= window"
            )
        b = self.baseline
        if not (b == "mean" or (isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b <= 1)):
            raise InvalidInputError(f"occlusion baseline must be a pixel value in [0, 1] or 'mean', got {b!r}")


def window_and_stride(cfg: OcclusionConfig, height: int, width: int) -> tuple[int, int]:
    """The occluder side and stride in pixels for ``height x width`` images."""
    side = min(height, width)
    window = cfg.window or max(2, round(side / 7))
    stride = cfg.stride or max(1, window // 2)
    if window > side:
        raise InvalidInputError(
            f"occlusion window {window} px is larger than the {height}x{width} images; use a smaller window"
        )
    if stride > window:
        raise InvalidInputError(
            f"occlusion stride {stride} exceeds window {window}, which leaves pixels never occluded; use stride <= window"
        )
    return window, stride


def _probabilities(model: AuditedModel):
    def forward(x: torch.Tensor) -> torch.Tensor:
        out = model(x).float()
        return out if model.outputs_probabilities else out.softmax(dim=1)

    return forward


def _correct_indicator(model: AuditedModel):
    """One-hot of the predicted class: its entry at the true label is 1 when the prediction is correct."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        out = model(x)
        return F.one_hot(out.argmax(dim=1), out.shape[1]).float()

    return forward


def occlusion_attribution(
    forward, x: torch.Tensor, y: torch.Tensor, window: int, stride: int, baseline: float | str, batch_size: int
) -> torch.Tensor:
    """Captum occlusion of ``x`` (N, C, H, W) for targets ``y``, in chunks so each forward pass holds about ``batch_size`` images.

    Captum adds a last window clipped at the border where the stride does not divide the remainder,
    so every pixel is occluded at least once."""
    occ = Occlusion(forward)
    c = x.shape[1]
    parts = []
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        base = xb.mean(dim=(2, 3), keepdim=True).expand_as(xb).contiguous() if baseline == "mean" else float(baseline)
        parts.append(
            occ.attribute(
                xb,
                sliding_window_shapes=(c, window, window),
                strides=(c, stride, stride),
                baselines=base,
                target=yb,
                perturbations_per_eval=max(1, batch_size // len(xb)),
            ).detach()
        )
    return torch.cat(parts) if parts else x.new_zeros(x.shape)


def outside_share(sensitivity: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: share of positive sensitivity on background pixels (mask < 0.5), and the background's share of pixels."""
    background = (masks < 0.5).float()
    positive = sensitivity.clamp(min=0)
    total = positive.sum(dim=(1, 2, 3))
    outside = (positive * background).sum(dim=(1, 2, 3))
    share = torch.where(total > 0, outside / total.clamp_min(1e-12), torch.full_like(total, math.nan))
    return share, background.mean(dim=(1, 2, 3))


def _heat(ax, m: np.ndarray, limit: float) -> None:
    ax.imshow(m, cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.axis("off")


def _show(ax, img: torch.Tensor) -> None:
    img = img.float().clamp(0, 1)
    ax.imshow(
        img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy(),
        cmap="gray" if img.shape[0] == 1 else None,
        vmin=0,
        vmax=1,
    )
    ax.axis("off")


def class_means_figure(images: torch.Tensor, maps: torch.Tensor, samples: pd.DataFrame, classes: list[str]) -> bytes:
    """Per class: the mean image and the mean occlusion map over its images (red: occluding lowers the true class)."""
    present = [k for k in range(len(classes)) if (samples["label"] == k).any()][:20]
    fig, axes = plt.subplots(2, len(present), figsize=(1.3 * len(present), 2.9), squeeze=False)
    means = [maps[torch.as_tensor((samples["label"] == k).to_numpy().copy())].mean(dim=0)[0].numpy() for k in present]
    limit = max(1e-6, max(float(np.abs(m).max()) for m in means))
    for j, k in enumerate(present):
        _show(axes[0, j], images[torch.as_tensor((samples["label"] == k).to_numpy().copy())].mean(dim=0))
        axes[0, j].set_title(classes[k], fontsize=8)
        _heat(axes[1, j], means[j], limit)
    fig.suptitle("mean image and mean occlusion sensitivity per class", fontsize=9)
    return figure_png(fig)


def examples_figure(
    images: torch.Tensor, maps: torch.Tensor, samples: pd.DataFrame, classes: list[str], count: int
) -> bytes:
    """Single images (one per class first) above their occlusion maps, titled with label and true-class probability."""
    first = samples.reset_index(drop=True).groupby("label", sort=True).head(1).index.tolist()
    rest = [i for i in range(len(samples)) if i not in set(first)]
    chosen = (first + rest)[:count]
    fig, axes = plt.subplots(2, len(chosen), figsize=(1.3 * len(chosen), 2.9), squeeze=False)
    limit = max(1e-6, float(maps[chosen].abs().max()))
    for j, i in enumerate(chosen):
        row = samples.iloc[i]
        _show(axes[0, j], images[i])
        axes[0, j].set_title(f"{classes[int(row['label'])]} p={row['true_prob']:.2f}", fontsize=7)
        _heat(axes[1, j], maps[i, 0].numpy(), limit)
    fig.suptitle("occlusion sensitivity (red: occluding here lowers the true class)", fontsize=9)
    return figure_png(fig)

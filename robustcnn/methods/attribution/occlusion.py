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
from matplotlib.cm import ScalarMappable
from matplotlib.colors import SymLogNorm

from ...errors import InvalidInputError
from ...models import AuditedModel
from ...options import Rule, option
from ...results.plots import figure_png, fit_text

MAP_SIDE = 64  # maps kept for figures are average-pooled to at most this many pixels a side
HEAT_CMAP = "RdBu_r"


@dataclass
class OcclusionConfig:
    """Options of ``[checks.occlusion]``; 0 picks the window (about a seventh of the image side) and stride (half the window)."""

    window: int = option(
        0,
        "occluder side; 0 = about a seventh of the shorter image side (4 px on 28x28, 32 px on 224x224)",
        range=">= 0",
        unit="pixels",
    )
    stride: int = option(0, "step; 0 = half the window; must not exceed the window", range=">= 0", unit="pixels")
    baseline: float | str = option(
        0.5,
        'occluder pixel value, or "mean" for each image\'s per-channel mean colour',
        range="[0, 1]",
        choices=("mean",),
    )
    examples: int = option(8, "images in the per-image figure (one per class first)", range=">= 0", unit="images")
    max_positions: int = option(
        0,
        "window positions per image side at most (a budget: the stride, and an automatic window, grow to fit "
        "it); 0 = no bound",
        range=">= 0",
    )

    rules = (
        Rule(
            "stride",
            "must not exceed {window}, which would leave pixels never occluded",
            lambda c: not (c.window and c.stride and c.stride > c.window),
        ),
        Rule("max_positions", "must be 0 (no bound) or at least 2", lambda c: c.max_positions != 1),
    )


def window_and_stride(cfg: OcclusionConfig, height: int, width: int) -> tuple[int, int]:
    """The occluder side and stride in pixels for ``height x width`` images.

    With ``max_positions`` the stride grows until at most that many positions fit along the longer
    side; where it would outgrow an automatic window, window and stride both become the longer side
    over ``max_positions`` (adjacent squares), so no pixel is left unoccluded (a window set by the
    user that the stride would outgrow is an error)."""
    side, longer = min(height, width), max(height, width)
    window = cfg.window or max(2, round(side / 7))
    stride = cfg.stride or max(1, window // 2)
    if cfg.max_positions:
        stride = max(stride, math.ceil((longer - window) / (cfg.max_positions - 1)))
        if stride > window and not cfg.window:
            window = stride = max(cfg.stride, math.ceil(longer / cfg.max_positions))
        elif stride > window:
            raise InvalidInputError(
                f"occlusion max_positions {cfg.max_positions} needs a stride of {stride} px on {height}x{width} images, "
                f"more than the {window} px window; raise max_positions or the window"
            )
    if window > side:
        raise InvalidInputError(
            f"occlusion window {window} px is larger than the {height}x{width} images; use a smaller window"
        )
    if stride > window:
        raise InvalidInputError(
            f"occlusion stride {stride} exceeds window {window}, which leaves pixels never occluded; use stride <= window"
        )
    return window, stride


def probability_forward(model: AuditedModel):
    """Class probabilities as a forward function, whether the model returns logits or probabilities."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        out = model(x).float()
        return out if model.outputs_probabilities else out.softmax(dim=1)

    return forward


def correct_indicator(model: AuditedModel):
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


def overlay_norm(maps: list[np.ndarray]) -> SymLogNorm:
    """A colour scale shared by ``maps``: symmetric around 0, limited at the 99.5th percentile of
    |sensitivity| (one extreme pixel does not wash out the rest) and logarithmic beyond a 20th of
    that limit, so weak but real sensitivity stays visible next to a strong peak."""
    values = np.abs(np.concatenate([m.ravel() for m in maps]))
    limit = max(1e-6, float(np.percentile(values, 99.5)))
    return SymLogNorm(linthresh=limit / 20, linscale=0.5, vmin=-limit, vmax=limit, clip=True)


def _overlay(ax, img: torch.Tensor, heat: np.ndarray, norm: SymLogNorm) -> None:
    """The image in grayscale under the sensitivity map, the map opaque where it is strong and
    transparent where it is near 0."""
    img = img.float().clamp(0, 1).mean(dim=0)
    ax.imshow(img.numpy(), cmap="gray", vmin=0, vmax=1)
    h, w = img.shape
    strength = np.abs(np.asarray(norm(heat), dtype=float) - 0.5) * 2
    ax.imshow(
        heat,
        cmap=HEAT_CMAP,
        norm=norm,
        alpha=np.clip(strength, 0, 1) * 0.85,
        extent=(-0.5, w - 0.5, h - 0.5, -0.5),
        interpolation="bilinear",
    )
    ax.axis("off")


def _overlay_figure(images: list[torch.Tensor], maps: list[np.ndarray], titles: list[str], suptitle: str) -> bytes:
    """One panel per image with its map overlaid, and a colour bar for the shared scale."""
    norm = overlay_norm(maps)
    fig, axes = plt.subplots(
        1, len(images), figsize=(0.9 + 1.25 * len(images), 2.0), squeeze=False, layout="constrained"
    )
    for ax, img, heat, title in zip(axes[0], images, maps, titles, strict=True):
        _overlay(ax, img, heat, norm)
        ax.set_title(title, fontsize=7)
    bar = fig.colorbar(ScalarMappable(norm, HEAT_CMAP), ax=list(axes[0]), shrink=0.85, pad=0.02)
    limit = norm.vmax
    bar.set_ticks(
        [-limit, -limit / 10, 0, limit / 10, limit],
        labels=[f"{t:.2g}" for t in (-limit, -limit / 10, 0, limit / 10, limit)],
    )
    bar.set_label("drop in true-class\nprobability", fontsize=7)
    bar.ax.tick_params(labelsize=6)
    fig.suptitle(fit_text(suptitle, 9, fig.get_figwidth() - 0.2), fontsize=9)
    return figure_png(fig)


def class_means_figure(images: torch.Tensor, maps: torch.Tensor, samples: pd.DataFrame, classes: list[str]) -> bytes:
    """Per class: the mean occlusion map over its images on their mean image (red: occluding lowers the true class)."""
    present = [k for k in range(len(classes)) if (samples["label"] == k).any()][:20]
    masks = [torch.as_tensor((samples["label"] == k).to_numpy().copy()) for k in present]
    return _overlay_figure(
        [images[m].mean(dim=0) for m in masks],
        [maps[m].mean(dim=0)[0].numpy() for m in masks],
        [classes[k] for k in present],
        "mean occlusion sensitivity per class on the mean image (red: occluding here lowers the true class)",
    )


def examples_figure(
    images: torch.Tensor, maps: torch.Tensor, samples: pd.DataFrame, classes: list[str], count: int
) -> bytes:
    """Single images (one per class first) under their occlusion maps, titled with label and true-class probability."""
    first = samples.reset_index(drop=True).groupby("label", sort=True).head(1).index.tolist()
    rest = [i for i in range(len(samples)) if i not in set(first)]
    chosen = (first + rest)[:count]
    return _overlay_figure(
        [images[i] for i in chosen],
        [maps[i, 0].numpy() for i in chosen],
        [f"{classes[int(samples.iloc[i]['label'])]} p={samples.iloc[i]['true_prob']:.2f}" for i in chosen],
        "occlusion sensitivity (red: occluding here lowers the true class)",
    )

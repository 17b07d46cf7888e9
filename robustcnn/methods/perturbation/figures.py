"""Figures of the adversarial check: the robust-accuracy curves and example triples
(clean / perturbation x10 / adversarial) with labels and confidences."""

from __future__ import annotations

import pandas as pd
import torch

from ...results.plots import figure_png, image_grid, plt


def curve_png(rows: pd.DataFrame) -> bytes:
    """Robust accuracy vs epsilon, one panel per norm, with 95% Wilson bands."""
    norms = list(dict.fromkeys(rows["norm"]))
    fig, axes = plt.subplots(1, len(norms), figsize=(4.2 * len(norms), 3.2), squeeze=False, layout="constrained")
    for ax, norm in zip(axes[0], norms, strict=False):
        part = rows[rows["norm"] == norm].sort_values("eps")
        ax.plot(part["eps"], part["value"], marker="o", color="tab:red")
        ax.fill_between(part["eps"], part["ci_low"], part["ci_high"], color="tab:red", alpha=0.2)
        ax.set_xlabel(f"{norm} epsilon")
        ax.set_ylabel("robust accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    fig.suptitle("Robust accuracy (worst case over the attack cascade)", fontsize=9)
    return figure_png(fig)


def examples_png(
    clean: torch.Tensor, adversarial: torch.Tensor, titles: list[tuple[str, str, str]], suptitle: str
) -> bytes:
    """Rows of (clean, perturbation x10 around mid-gray, adversarial) triples, two per row."""
    perturbation = (0.5 + 10 * (adversarial - clean)).clamp(0, 1)
    images = torch.stack([clean, perturbation, adversarial], dim=1).flatten(0, 1)
    flat_titles = [t for triple in titles for t in triple]
    return image_grid(images, flat_titles, ncols=6, scale=1.4, suptitle=suptitle)

"""Figures of the confidence check: reliability diagram, score histograms, risk-coverage curves."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import NullFormatter

from ...results.plots import figure_png, image_grid
from .calibration import Reliability, RiskCoverage
from .scores import LABELS, display_values


def reliability_diagram(rel: Reliability) -> bytes:
    """Accuracy against mean confidence per bin; the gap to the diagonal is the miscalibration."""
    fig, ax = plt.subplots(figsize=(4.2, 4.2), layout="constrained")
    width = rel.edges[1] - rel.edges[0]
    centers = rel.edges[:-1] + width / 2
    filled = rel.counts > 0
    ax.bar(centers[filled], rel.accuracy[filled], width=width, edgecolor="black", color="#4c78a8", label="accuracy")
    acc, conf = rel.accuracy[filled], rel.confidence[filled]
    ax.bar(
        centers[filled],
        np.abs(conf - acc),
        bottom=np.minimum(conf, acc),
        width=width,
        fill=False,
        edgecolor="#e45756",
        hatch="//",
        label="gap to mean confidence",
    )
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    for c, a, k in zip(centers[filled], rel.accuracy[filled], rel.counts[filled], strict=False):
        ax.text(c, min(a, 0.93) + 0.02, str(int(k)), ha="center", fontsize=6)
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="confidence (max softmax probability)",
        ylabel="accuracy",
        title=f"Reliability ({len(rel.counts)} bins), ECE = {rel.ece:.3f}",
    )
    ax.legend(fontsize=7, loc="upper left")
    return figure_png(fig)


def risk_coverage_plot(curves: dict[str, RiskCoverage]) -> bytes:
    """Selective risk against coverage for each score, with the best possible ranking."""
    fig, ax = plt.subplots(figsize=(5, 3.6), layout="constrained")
    for name, rc in curves.items():
        ax.plot(rc.coverage, rc.risk, lw=1.4, label=f"{LABELS[name]} (AURC {rc.aurc:.4f})")
    first = next(iter(curves.values()))
    errors = round(first.risk[-1] * len(first.risk))
    n = len(first.risk)
    k = np.arange(1, n + 1)
    ax.plot(
        first.coverage, np.maximum(0, k - (n - errors)) / k, "k:", lw=1, label=f"oracle (AURC {first.optimal_aurc:.4f})"
    )
    ax.set(
        xlabel="coverage (share of inputs answered)",
        ylabel="risk (error rate of answered)",
        xlim=(0, 1),
        title="Risk-coverage: abstain on the least confident inputs",
    )
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    return figure_png(fig)


def score_histograms(name: str, clean: np.ndarray, sets: dict[str, np.ndarray], threshold: float, tpr: float) -> bytes:
    """Clean against each OOD set for one score, with the threshold that keeps ``tpr`` of clean inputs."""
    clean_v = np.asarray(display_values(name, clean))
    cols = min(3, len(sets))
    rows = math.ceil(len(sets) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.5 * rows), squeeze=False, layout="constrained")
    thr = float(display_values(name, threshold))
    for ax, (set_name, values) in zip(axes.flat, sets.items(), strict=False):
        ood_v = np.asarray(display_values(name, values))
        both = np.concatenate([clean_v, ood_v])
        lo, hi = float(both.min()), float(both.max())
        bins = np.linspace(lo, hi if hi > lo else lo + 1e-6, 31)
        ax.hist(clean_v, bins=bins, alpha=0.55, color="#4c78a8", label="clean", density=True)
        ax.hist(ood_v, bins=bins, alpha=0.55, color="#e45756", label=set_name, density=True)
        ax.axvline(thr, color="black", ls="--", lw=1)
        accepted = float(np.mean(values >= threshold))
        ax.set_title(f"{set_name}: {accepted:.0%} accepted", fontsize=8)
        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(NullFormatter())  # labelled minor ticks crowd a short log axis
        ax.set_ylabel("density (log scale)", fontsize=7)
        ax.set_xlabel(LABELS[name], fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(sets) :]:
        ax.axis("off")
    fig.suptitle(f"{LABELS[name]}; dashed: threshold keeping {tpr:.0%} of clean inputs", fontsize=9)
    return figure_png(fig)


def accepted_examples(
    images: dict[str, torch.Tensor], scores: dict[str, np.ndarray], name: str, threshold: float, per_set: int = 5
) -> bytes:
    """The most confidently scored inputs of each OOD set, titled with their score and verdict."""
    shown, titles = [], []
    for set_name, x in images.items():
        order = np.argsort(-scores[set_name], kind="stable")[:per_set]
        for i in order:
            s = scores[set_name][i]
            shown.append(x[int(i)])
            verdict = "accepted" if s >= threshold else "rejected"
            shown_value = float(display_values(name, s))
            titles.append(
                f"{set_name}\n{shown_value:.6f} {verdict}"
                if name == "msp"
                else f"{set_name}\n{shown_value:.3g} {verdict}"
            )
    return image_grid(torch.stack(shown), titles, ncols=per_set, suptitle=f"Most confident bad inputs ({LABELS[name]})")

"""Every check's figures, checked like code on a tiny audit: no text overlaps another or leaves
the figure, every log-scaled axis has a label, and no figure is mostly empty.

One small audit renders the figures of every registered check: a small CNN trained in a second
on scikit-learn's digits (10 classes, enlarged to 16x16, with a ``site`` attribute for the
group checks), at budgets that keep the figures' shapes (10 classes, several rows and
columns) but not their cost.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from figure_lint import LayoutRecorder, blank_fraction, inspect, largest_blank_band
from sklearn.datasets import load_digits
from test_html_browser import measure, needs_chromium, with_probe
from torch import nn

import robustcnn
from robustcnn.checks import load_registry
from robustcnn.results.plots import figure_png, image_grid, plt

BLANK_LIMIT = 0.35  # share of a figure's area in empty rows or columns
BAND_LIMIT_PX = 60  # widest empty band (about half an inch at the 110 dpi of figure_png)

TINY = {
    "adversarial": {"norms": ["linf"], "attacks": ["fgsm"], "unbounded_images": 0, "max_examples": 4},
    "fooling-gradient": {"classes": [0, 1, 2, 3], "steps": 2, "prototype_steps": 2},
    "fooling-evolution": {"population": 4, "generations": 2},
    "noise": {"n": 8},
    "patch": {
        "train_images": 4,
        "epochs": 1,
        "areas": [0.05, 0.1],
        "shapes": ["square"],
        "pilot_classes": 2,
        "pilot_images": 4,
        "pilot_epochs": 1,
        "vulnerable_targets": 1,
        "examples": 3,
    },
    "occlusion": {"window": 7, "stride": 7, "examples": 4},
    "spatial": {"n_angles": 3, "random_trials": 1},
    "corruptions": {
        "corruptions": ["gaussian_noise", "elastic_transform", "fog", "jpeg_compression"],
        "severities": [1, 3],
    },
    "confidence": {
        "sets": ["gaussian-noise", "uniform-noise", "fooling-gradient", "adversarial"],
        "odtest": False,
        "noise_n": 8,
        "fooling_n": 2,
        "fooling_steps": 2,
        "adversarial_n": 4,
        "adversarial_steps": 2,
        "max_per_set": 8,
    },
    "label-issues": {"bootstrap": 5},
    "groups": {"bootstrap": 5, "min_group_size": 5},
}


def digits_npz(path):
    """The digits, enlarged to 16x16, split 1,400 train / 397 eval; ``site`` leans on the label."""
    digits = load_digits()
    x = np.kron(digits.images[:, None] / 16.0, np.ones((2, 2))).astype(np.float32)
    y = digits.target.astype(np.int64)
    site = np.where((y + np.arange(len(y)) % 3) % 2 == 0, "north", "south")
    cut = 1400
    np.savez(path, x=x[cut:], y=y[cut:], site=site[cut:], x_train=x[:cut], y_train=y[:cut], train_site=site[:cut])
    return torch.from_numpy(x[:cut]), torch.from_numpy(y[:cut])


def small_cnn(x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    """A small CNN fitted full-batch for a few dozen steps (about 90% test accuracy)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 8 * 8, 10)
    )
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The figures of every check (check/name -> PNG bytes) and the layout findings of each saved figure."""
    root = tmp_path_factory.mktemp("figures")
    model = small_cnn(*digits_npz(root / "digits.npz"))
    checks = list(load_registry())
    with LayoutRecorder() as recorder:
        report = robustcnn.audit(
            model=model,
            data=str(root / "digits.npz"),
            checks=checks,
            n=20,
            train_n=300,
            out=root / "report",
            seed=0,
            options={c: TINY[c] for c in checks if c in TINY},
        )
    figures = {f"{c}/{name}": path.read_bytes() for c, files in report.figures.items() for name, path in files.items()}
    return figures, recorder.findings, report.path / "report.html"


def test_every_check_with_figures_rendered_some(rendered):
    figures, findings, _ = rendered
    checks = {name.split("/")[0] for name in figures}
    expected = {"adversarial", "fooling-gradient", "fooling-evolution", "noise", "patch", "occlusion"}
    expected |= {"spatial", "corruptions", "confidence", "groups", "dataset-bias"}
    assert expected <= checks, sorted(expected - checks)
    assert len(findings) >= len(figures)


def test_no_text_overlaps_or_leaves_a_figure_and_log_axes_are_labelled(rendered):
    _, findings, _ = rendered
    problems = [f"{f.name}: {p}" for f in findings for p in f.problems]
    assert problems == []


def test_no_figure_is_mostly_blank(rendered):
    figures, _, _ = rendered
    blank = {name: round(blank_fraction(png), 3) for name, png in figures.items()}
    bands = {name: largest_blank_band(png) for name, png in figures.items()}
    assert {k: v for k, v in blank.items() if v > BLANK_LIMIT} == {}
    assert {k: v for k, v in bands.items() if v > BAND_LIMIT_PX} == {}


def test_the_checks_see_a_bad_layout():
    """The controls: a suptitle on top of one row of titled panels, a log axis without a label,
    text beyond the edge, and a figure with a wide empty band are all reported."""
    fig, axes = plt.subplots(1, 3, figsize=(3, 1.2))
    for ax in axes:
        ax.set_title("a title\nof two lines", fontsize=9)
    fig.suptitle("a suptitle that sits on the titles", y=0.9)
    axes[0].set_yscale("log")
    fig.text(0.9, 0.5, "far beyond the right edge")
    found = inspect(fig)
    assert any("suptitle" in a or "suptitle" in b for a, b in found.overlaps)
    assert found.unlabelled_log_axes and "far beyond the right edge" in found.outside
    fig2, (top, bottom) = plt.subplots(2, 1, figsize=(4, 6))
    top.set_position((0.1, 0.8, 0.8, 0.15))
    bottom.set_position((0.1, 0.05, 0.8, 0.15))
    png = figure_png(fig2)
    assert blank_fraction(png) > BLANK_LIMIT or largest_blank_band(png) > BAND_LIMIT_PX
    plt.close(fig)


def test_image_grid_fits_its_titles_and_wraps_a_long_suptitle():
    import torch

    with LayoutRecorder() as recorder:
        png = image_grid(
            torch.rand(3, 1, 8, 8),
            ["a rather long panel title", "two\nlines", "x"],
            ncols=3,
            scale=0.5,
            suptitle="a suptitle much wider than three small panels side by side",
        )
    assert recorder.findings[0].problems == []
    assert largest_blank_band(png) <= BAND_LIMIT_PX


@needs_chromium
def test_the_audit_page_loads_every_figure_and_shows_the_whole_scorecard(rendered, tmp_path):
    """The page of the tiny audit in headless Chromium: one scorecard row per check, no scrolling
    box around the scorecard, and every figure decodes."""
    figures, _, page = rendered
    found = measure(with_probe(page, tmp_path / "probed.html"), tmp_path, 900)
    assert found["rows"] == len(load_registry()) and found["clipped"] == []
    assert found["images"] == len(figures) and found["broken"] == 0

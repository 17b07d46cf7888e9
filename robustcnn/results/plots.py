"""Figure helpers shared by checks: render matplotlib figures to PNG bytes and image grids.

``image_grid`` lays its panels out in inches from the measured size of its texts, so titles
never overlap the suptitle or a neighbour and the figure has no empty band around the panels.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

TITLE_PT = 7  # panel titles of an image grid
SUPTITLE_PT = 9
GAP_IN = 0.08  # between panels, and around the grid
TITLE_PAD_PT = 3
FRAME_COLOR = "#b0b4b8"


def figure_png(fig: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def text_size(text: str, fontsize: float) -> tuple[float, float]:
    """Width and height in inches of ``text`` (several lines allowed) as matplotlib renders it."""
    scratch = Figure(dpi=72)
    canvas = FigureCanvasAgg(scratch)
    box = scratch.text(0, 0, text, fontsize=fontsize).get_window_extent(canvas.get_renderer())
    return box.width / 72, box.height / 72


def fit_text(text: str, fontsize: float, width_in: float) -> str:
    """``text`` wrapped at spaces so that no line is wider than ``width_in`` inches."""
    wide = text_size(text, fontsize)[0]
    if wide <= width_in:
        return text
    chars = max(8, int(len(text) * width_in / wide))
    for limit in range(chars, 7, -1):
        wrapped = textwrap.fill(text, limit)
        if text_size(wrapped, fontsize)[0] <= width_in:
            return wrapped
    return textwrap.fill(text, 8)


def image_grid(
    images: torch.Tensor,
    titles: Sequence[str] | None = None,
    ncols: int = 10,
    scale: float = 1.3,
    suptitle: str | None = None,
) -> bytes:
    """A grid of (N, C, H, W) images in [0, 1], ``scale`` inches wide each, with optional titles, as PNG bytes.

    A column is widened to its widest title; the suptitle is wrapped to the grid's width."""
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = max(1, (n + ncols - 1) // ncols)
    panel_w = scale
    panel_h = scale * images.shape[-2] / images.shape[-1]
    sizes = [text_size(t, TITLE_PT) for t in titles[:n] if t] if titles is not None else []
    col_w = max([panel_w] + [w for w, _ in sizes]) + GAP_IN
    title_h = max([h + TITLE_PAD_PT / 72 for _, h in sizes], default=0.0)
    fig_w = ncols * col_w + 2 * GAP_IN
    head = 0.0
    if suptitle:
        suptitle = fit_text(suptitle, SUPTITLE_PT, fig_w - 2 * GAP_IN)
        head = text_size(suptitle, SUPTITLE_PT)[1] + GAP_IN
    row_h = title_h + panel_h + GAP_IN
    fig_h = head + nrows * row_h + GAP_IN
    fig = plt.figure(figsize=(fig_w, fig_h))
    for i in range(n):
        r, c = divmod(i, ncols)
        left = GAP_IN + c * col_w + (col_w - panel_w) / 2
        bottom = fig_h - GAP_IN - head - r * row_h - title_h - panel_h
        ax = fig.add_axes((left / fig_w, bottom / fig_h, panel_w / fig_w, panel_h / fig_h))
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():  # a thin frame, so that a white image still shows its edges
            spine.set_edgecolor(FRAME_COLOR)
            spine.set_linewidth(0.6)
        img = images[i].detach().float().cpu().clamp(0, 1)
        if img.shape[0] == 1:
            ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1, aspect="auto")
        else:
            ax.imshow(img.permute(1, 2, 0).numpy(), aspect="auto")
        if titles is not None and titles[i]:
            ax.set_title(titles[i], fontsize=TITLE_PT, pad=TITLE_PAD_PT)
    if suptitle:
        fig.suptitle(suptitle, fontsize=SUPTITLE_PT, y=1 - GAP_IN / fig_h, va="top")
    return figure_png(fig)

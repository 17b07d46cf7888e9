"""Layout checks for matplotlib figures, measured by matplotlib itself on a rendered canvas.

``LayoutRecorder`` wraps ``Figure.savefig`` while active, so every figure a check saves is drawn
once more first and inspected: which text artists were drawn (``Text.draw`` is recorded), whether
their window extents overlap or leave the figure, and whether every log-scaled axis has a label.
``blank_fraction`` reads a saved PNG and measures the share of it that is empty margin.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from itertools import combinations

import matplotlib.image
import numpy as np
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox

TOLERANCE_PX = 1.0  # overlaps or overhangs this small are antialiasing, not a layout fault


@dataclass
class FigureFindings:
    """What one saved figure got wrong; ``name`` is its suptitle or first axes title."""

    name: str
    overlaps: list[tuple[str, str]] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    unlabelled_log_axes: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return (
            [f"{a!r} overlaps {b!r}" for a, b in self.overlaps]
            + [f"{t!r} leaves the figure" for t in self.outside]
            + [f"log-scaled {axis} axis without a label" for axis in self.unlabelled_log_axes]
        )


def drawn_texts(fig: Figure) -> list[tuple[Text, Bbox]]:
    """The non-empty text artists a draw of ``fig`` actually renders, with their window extents."""
    seen: list[Text] = []
    original = Text.draw

    def record(self, renderer):
        if self.get_visible() and self.get_text().strip() and self.figure is fig:
            seen.append(self)
        return original(self, renderer)

    Text.draw = record
    try:
        fig.canvas.draw()
    finally:
        Text.draw = original
    renderer = fig.canvas.get_renderer()
    return [(t, t.get_window_extent(renderer)) for t in dict.fromkeys(seen)]


def _intersect(a: Bbox, b: Bbox) -> bool:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return width > TOLERANCE_PX and height > TOLERANCE_PX


def inspect(fig: Figure) -> FigureFindings:
    """Overlapping texts, texts beyond the figure's edges and unlabelled log axes of ``fig``."""
    texts = drawn_texts(fig)
    name = fig._suptitle.get_text() if fig._suptitle else next((ax.get_title() for ax in fig.axes), "")
    found = FigureFindings(name or "(untitled figure)")
    for (t1, b1), (t2, b2) in combinations(texts, 2):
        if _intersect(b1, b2):
            found.overlaps.append((t1.get_text(), t2.get_text()))
    edge = fig.bbox
    for t, box in texts:
        if (
            box.x0 < edge.x0 - TOLERANCE_PX
            or box.y0 < edge.y0 - TOLERANCE_PX
            or box.x1 > edge.x1 + TOLERANCE_PX
            or box.y1 > edge.y1 + TOLERANCE_PX
        ):
            found.outside.append(t.get_text())
    for ax in fig.axes:
        if not ax.axison:
            continue
        for axis, scale, label in (
            ("x", ax.get_xscale(), ax.get_xlabel()),
            ("y", ax.get_yscale(), ax.get_ylabel()),
        ):
            if scale in ("log", "symlog", "logit") and not label.strip():
                found.unlabelled_log_axes.append(f"{axis} of {ax.get_title() or found.name!r}")
    return found


class LayoutRecorder:
    """While entered, inspects every figure saved with ``Figure.savefig`` (see ``inspect``)."""

    def __init__(self) -> None:
        self.findings: list[FigureFindings] = []

    def __enter__(self) -> LayoutRecorder:
        self._original = Figure.savefig
        recorder = self

        def savefig(fig, *args, **kwargs):
            recorder.findings.append(inspect(fig))
            return recorder._original(fig, *args, **kwargs)

        Figure.savefig = savefig
        return self

    def __exit__(self, *exc) -> None:
        Figure.savefig = self._original


def _empty_lines(png: bytes, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the rows and of the columns that hold only background (the colour of the
    top-left pixel, within ``tolerance`` per channel)."""
    pixels = matplotlib.image.imread(io.BytesIO(png), format="png")[..., :3]
    empty = (np.abs(pixels - pixels[0, 0]) <= tolerance).all(axis=2)
    return empty.all(axis=1), empty.all(axis=0)


def blank_fraction(png: bytes, tolerance: float = 0.03) -> float:
    """The share of the image's area covered by rows or columns that hold only background."""
    rows, cols = _empty_lines(png, tolerance)
    return float(1 - (~rows).mean() * (~cols).mean())


def largest_blank_band(png: bytes, tolerance: float = 0.03) -> int:
    """The widest run of adjacent empty rows or columns, in pixels."""
    widest = 0
    for mask in _empty_lines(png, tolerance):
        run = 0
        for empty in mask:
            run = run + 1 if empty else 0
            widest = max(widest, run)
    return widest

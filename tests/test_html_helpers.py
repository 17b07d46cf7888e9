"""Builders of small synthetic report directories for the report, gate and compare tests.

The directories are written by the real report writer, so they load with ``Report.load`` like
any audit's output. Text fields carry HTML payloads to test escaping end to end.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from robustcnn.results.plots import figure_png
from robustcnn.results.report import Report
from robustcnn.results.schema import combine, rate, tidy, value
from robustcnn.results.writer import write_report

SCRIPT_CLASS = "<script>alert(1)</script>"
EVIL = "<img src=x onerror=\"document.title='pwned'\">"
CLASSES = ["zero", "one", SCRIPT_CLASS]


def clean_rows(accuracy: float = 0.9) -> list[dict]:
    rows = [rate("accuracy", round(accuracy * 100), 100), value("mean_confidence", 0.93, 100)]
    rows += [rate("class_accuracy", 7 + k, 10, **{"class": c}) for k, c in enumerate(CLASSES)]
    rows.append(value("confusion_count", 3, None, **{"class": SCRIPT_CLASS, "pred": EVIL}))
    return rows


def curve_rows(drop: float = 0.0) -> list[dict]:
    """A robust-accuracy curve: two norms, two budgets, two attacks, plus per-class rows."""
    rows = []
    for norm, budgets in (("linf", (0.05, 0.1)), ("l2", (0.5, 1.0))):
        for i, eps in enumerate(budgets):
            for attack, strength in (("fgsm", 0.1), ("pgd", 0.2)):
                acc = 0.8 - strength - 0.2 * i - drop
                rows.append(rate("robust_accuracy", round(acc * 200), 200, norm=norm, eps=eps, attack=attack))
    rows += [
        rate("robust_accuracy", 10 + k, 20, norm="linf", eps=0.1, attack="pgd", **{"class": c})
        for k, c in enumerate(CLASSES)
    ]
    return rows


def line_png(slope: float) -> bytes:
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [0, slope])
    ax.set_title(f"slope {slope}")
    return figure_png(fig, dpi=60)


def write_synthetic(
    out: Path,
    model: str = "demo-model",
    accuracy: float = 0.9,
    drop: float = 0.0,
    curve_check: str = "mystery",
    status: str = "complete",
) -> Report:
    """A complete report directory: ``clean`` (a registered check) and ``curve_check`` rows, figures,
    warnings and notes with HTML in them; returns it loaded from disk."""
    table = combine([tidy(clean_rows(accuracy), model, "clean"), tidy(curve_rows(drop), model, curve_check)])
    figures = {"clean": {"<b>grid": line_png(1.0)}, curve_check: {"curve": line_png(-1.0)}}
    samples = pd.DataFrame({"model": model, "check": "clean", "sample": ["a", "b"], "correct": [True, False]})
    entry = {"version": "1", "config": {}, "seconds": 0.5, "forward": 100, "backward": 0, "warnings": []}
    meta = {
        "schema_version": 1,
        "robustcnn_version": "0.1.0",
        "model": {"name": model, "spec": f"demo:{model}"},
        "data": {"name": "synthetic", "eval_n": 100},
        "seed": 0,
        "device": "cpu",
        "notes": [f"note {EVIL}"],
        "checks": {
            "clean": {**entry, "status": "complete", "warnings": [f"warned {EVIL}"]},
            curve_check: {**entry, "status": status},
        },
    }
    write_report(out, table, samples, meta, figures)
    return Report.load(out)

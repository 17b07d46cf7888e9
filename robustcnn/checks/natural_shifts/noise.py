"""``noise``: what the model says about pure noise (the "arbitrary predictions" test, Shafaei, Schmidt & Little 2018).

A classifier that cannot abstain still has to label static; a trustworthy one spreads its
probability. Images of Gaussian noise N(0.5, 0.25^2) clipped to [0, 1] and of uniform noise
U(0, 1) at the model's size and channels are classified, and the check reports which classes
they land in and how confident the model is about them.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from ...estimate import CostInputs, Passes, Probe, Work
from ...methods.fooling.gradient import check_outputs, image_shape, log_probabilities, warn_if_probabilities
from ...methods.shifts.noise_corruptions import noise_images
from ...models import AuditedModel
from ...options import option
from ...results.plots import figure_png
from ...results.schema import rate, value
from ...stats import wilson_interval
from .. import AuditData, Check, CheckContext, CheckOutput, Headline, batched, register

KINDS = ("gaussian", "uniform")
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@register
class NoiseCheck(Check):
    name = "noise"
    family = "natural shifts"
    title = "Predictions on pure noise"
    description = (
        "Classifies images of Gaussian and uniform noise, which belong to no class. Rows give the share of noise "
        "images assigned to each class, the share of the most predicted class, the mean and quantiles of the top "
        "probability, and the share predicted above 0.9 and 0.99. A model that sends most noise to one class with "
        "high confidence will make confident arbitrary predictions on inputs it was never meant to see."
    )
    reference = "Shafaei, Schmidt & Little 2018, A less biased evaluation of out-of-distribution sample detectors (arbitrary-predictions test)."
    version = "1"

    @dataclass
    class Config:
        n: int = option(1000, "images of each kind", range=">= 1", unit="images")
        kinds: list[str] = option(list(KINDS), "which noise kinds", choices=KINDS, nonempty=True)
        mean: float = option(0.5, "mean of the Gaussian noise", unit="pixel units")
        std: float = option(
            0.25, "standard deviation of the Gaussian noise (before clipping)", range="> 0", unit="pixel units"
        )
        thresholds: list[float] = option([0.9, 0.99], "top-probability levels for share_above", range="(0, 1)")

    def run(self, model: AuditedModel, data: AuditData, ctx: CheckContext) -> CheckOutput:
        c = self.config
        check_outputs(model, data)
        warn_if_probabilities(model, ctx, self.name)
        shape = image_shape(model, data)
        out = CheckOutput(info={"seed": ctx.seed})
        counts = {}
        for kind in c.kinds:
            x = noise_images(kind, c.n, shape, c.mean, c.std, ctx.generator(self.name, kind))
            with torch.no_grad():
                logp = log_probabilities(
                    batched(lambda b: model(b.to(model.device)).cpu(), x, ctx.batch_size), model.outputs_probabilities
                )
            top, pred = logp.exp().max(dim=1)
            counts[kind] = np.bincount(pred.numpy(), minlength=len(data.classes))
            out.rows += self.rows(kind, top.numpy(), counts[kind], data.classes)
        out.figures[self.name] = _histogram(counts, data.classes)
        return out

    def estimate_passes(self, inputs: CostInputs) -> Passes:
        return Passes(len(self.config.kinds) * self.config.n, batch=min(self.config.n, inputs.batch_size))

    def estimate_work(self, inputs: CostInputs, probe: Probe) -> Work:
        """Drawing the noise images, timed on as many as the calibration holds and scaled, and the histogram."""
        c, m = self.config, len(probe.x)
        drawn = sum(
            probe.timed(
                ("noise", kind, inputs.shape),
                lambda kind=kind: noise_images(kind, m, inputs.shape, c.mean, c.std, torch.Generator().manual_seed(0)),
            )
            for kind in c.kinds
        )
        return Work(drawn * c.n / m, f"{len(c.kinds) * c.n:,} noise images") + probe.figures(charts=[1])

    def rows(self, kind: str, top: np.ndarray, counts: np.ndarray, classes: list[str]) -> list[dict]:
        n = len(top)
        rows = [
            rate("predicted_share", int(counts[k]), n, ood=kind, **{"class": name}) for k, name in enumerate(classes)
        ]
        most = int(counts.argmax())
        rows.append(rate("top_class_share", int(counts[most]), n, ood=kind, **{"class": classes[most]}))
        rows.append(value("mean_top_probability", float(top.mean()), n, ood=kind))
        rows += [
            value("top_probability_quantile", float(np.quantile(top, q)), n, ood=kind, quantile=q) for q in QUANTILES
        ]
        rows += [rate("share_above", int((top > t).sum()), n, ood=kind, threshold=t) for t in self.config.thresholds]
        return rows

    def headline(self, table: pd.DataFrame) -> Headline | None:
        part = table[table["metric"] == "share_above"]
        if part.empty:
            return None
        thr = float(pd.to_numeric(part["threshold"]).max())
        part = part[pd.to_numeric(part["threshold"]) == thr]
        n = int(part["n"].sum())
        hits = float((part["value"] * part["n"]).sum())
        low, high = wilson_interval(hits, n)
        return Headline(
            f"noise images predicted above {thr:g}",
            hits / n,
            "lower",
            "rate",
            low,
            high,
            n,
            {"metric": "share_above", "threshold": thr},
        )


def _histogram(counts: dict[str, np.ndarray], classes: list[str]) -> bytes:
    fig, ax = plt.subplots(figsize=(min(16.0, max(4.0, 0.45 * len(classes) + 2)), 2.8), layout="constrained")
    width = 0.8 / len(counts)
    pos = np.arange(len(classes))
    for i, (kind, c) in enumerate(counts.items()):
        ax.bar(pos + i * width, c / c.sum(), width, label=kind)
    ax.set_xticks(pos + width * (len(counts) - 1) / 2, classes, rotation=90 if len(classes) > 12 else 0, fontsize=7)
    ax.set_ylabel("share of noise images")
    ax.set_title("predicted class of pure-noise images")
    ax.legend(fontsize=7)
    return figure_png(fig)

"""``fooling-gradient``: images a model is sure of that no person would recognise.

Gradient ascent on a class's log-probability from noise (Nguyen, Yosinski & Clune 2015, sec. 3.3);
the optimisers live in ``robustcnn.methods.fooling.gradient``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import pandas as pd
import torch

from ...artifacts import FOOLING_GRADIENT_IMAGES
from ...checks import AuditData, Check, CheckContext, CheckOutput, Headline, register
from ...estimate import CostInputs, Passes, Probe, Work
from ...methods.fooling.gradient import (
    DEFAULT_THRESHOLDS,
    GradientVariant,
    check_outputs,
    fooled_label,
    gradient_fooling,
    image_shape,
    resolve_classes,
    warn_if_probabilities,
)
from ...models import AuditedModel
from ...options import option
from ...results.plots import image_grid


@register
class FoolingGradientCheck(Check):
    name = "fooling-gradient"
    family = "fooling images"
    title = "Fooling images by gradient ascent"
    description = (
        "For every class, gradient ascent from random noise on the class's log-probability finds an image the model "
        "assigns to that class; rows give the best confidence reached and the steps and model evaluations needed to "
        "pass 99%, 99.9% and 99.99% (NaN, status 'unreached', if never). The 'fooling' variant yields static the "
        "model is nearly certain about, the regularised 'prototype' variant shows what the model thinks each class "
        "looks like: if both reach high confidence, confidence alone cannot tell real inputs from garbage."
    )
    reference = (
        "Nguyen, Yosinski & Clune 2015, Deep neural networks are easily fooled (CVPR); Simonyan, Vedaldi & Zisserman "
        "2014, Deep inside convolutional networks; Yosinski et al. 2015, Understanding neural networks through deep visualization."
    )
    version = "2"
    provides = (FOOLING_GRADIENT_IMAGES,)

    @dataclass
    class Config:
        classes: list[int | str] = option(
            [], "class indices or names to attack; [] = all; out-of-range indices and unknown names are an error"
        )
        variants: list[str] = option(
            ["fooling", "prototype"], "which variants to run", choices=("fooling", "prototype"), nonempty=True
        )
        steps: int = option(300, "gradient steps of the fooling variant", range=">= 1", unit="steps")
        step_size: float = option(
            0.02, "L2 step per sqrt(pixel) (0.56 in L2 for a 28x28 image)", range="> 0", unit="pixel units"
        )
        l2_decay: float = option(0.001, "pull towards the mean pixel per step", range="[0, 1)")
        thresholds: list[float] = option(
            list(DEFAULT_THRESHOLDS), "confidences whose first crossing is reported", range="(0, 1)", nonempty=True
        )
        stop_at: float = option(
            0.99999,
            "a class of the fooling variant stops once it reaches this confidence; 1 runs every step",
            range="(0, 1]",
        )
        prototype_steps: int = option(200, "steps of the prototype variant", range=">= 1", unit="steps")
        prototype_step_size: float = option(0.01, "step size of the prototype variant", range="> 0", unit="pixel units")
        prototype_l2_decay: float = option(0.02, "L2 decay of the prototype variant", range="[0, 1)")
        jitter: int = option(1, "random shift before each gradient evaluation", range=">= 0", unit="pixels")
        blur_every: int = option(4, "Gaussian blur every k steps (0: never)", range=">= 0", unit="steps")
        blur_sigma: float = option(0.8, "blur width", range=">= 0", unit="pixels")
        tv_weight: float = option(0.0, "total-variation penalty weight (prototype variant)", range=">= 0")

    def estimate_passes(self, inputs: CostInputs) -> Passes:
        """Per class and variant, a gradient pass per step plus the final look (and, with jitter, a pass on
        the unjittered image each step); the fooling variant stops once a class reaches ``stop_at``."""
        k = len(self.config.classes) or inputs.num_classes
        total = Passes(0)
        for name in self.config.variants:
            v = self.variant(name)
            looks = 2 if v.jitter else 1
            total += Passes(
                k * (v.steps + 1) * looks, k * v.steps, bound=name == "fooling" and self.config.stop_at < 1, batch=k
            )
        return total

    def estimate_work(self, inputs: CostInputs, probe: Probe) -> Work:
        """A grid of the classes' images per variant and, with both variants, the contrast grid."""
        k = len(self.config.classes) or inputs.num_classes
        variants = len(self.config.variants)
        return probe.figures(grids=[k] * variants + ([2 * k] if variants == 2 else []))

    def variant(self, name: str) -> GradientVariant:
        c = self.config
        if name == "fooling":
            return GradientVariant("fooling", c.steps, c.step_size, c.l2_decay, "uniform")
        return GradientVariant(
            "prototype",
            c.prototype_steps,
            c.prototype_step_size,
            c.prototype_l2_decay,
            "mean",
            c.jitter,
            c.blur_every,
            c.blur_sigma,
            c.tv_weight,
        )

    def run(self, model: AuditedModel, data: AuditData, ctx: CheckContext) -> CheckOutput:
        check_outputs(model, data)
        classes = resolve_classes(self.config.classes, data.classes, self.name)
        warn_if_probabilities(model, ctx, self.name)
        shape = image_shape(model, data)
        centre = data.eval.x.float().mean(dim=(0, 2, 3))
        out = CheckOutput(info={"seed": ctx.seed, "classes": [data.classes[k] for k in classes]})
        images: dict[str, torch.Tensor] = {}
        titles: dict[str, list[str]] = {}
        for name in self.config.variants:
            gen = ctx.generator(self.name, name, device=str(model.device))
            stop_at = self.config.stop_at if name == "fooling" else 1.0  # a prototype is the image after every step
            trace = gradient_fooling(
                model, classes, shape, self.variant(name), self.config.thresholds, stop_at, gen, centre
            )
            out.rows += trace.rows(classes, data.classes, "steps", variant=name)
            images[name] = trace.images
            titles[name] = trace.grid_titles(classes, data.classes)
            out.figures[f"{self.name}-{name}"] = image_grid(
                trace.images,
                titles[name],
                suptitle=f"{name} images: best confidence per class (seed {ctx.seed})",
            )
        if len(images) == 2:
            out.figures[f"{self.name}-contrast"] = image_grid(
                torch.cat([images["fooling"], images["prototype"]]),
                [f"fooling {t}" for t in titles["fooling"]] + [f"prototype {t}" for t in titles["prototype"]],
                ncols=len(classes),
                suptitle="top: unregularised fooling images; bottom: regularised class prototypes",
            )
        if "fooling" in images:
            out.artifacts.put(FOOLING_GRADIENT_IMAGES, images["fooling"])
        return out

    def headline(self, table: pd.DataFrame) -> Headline | None:
        """Median gradient steps from noise to the highest threshold over the classes (fooling variant).

        The share of classes fooled is 1 for nearly every undefended model, so it cannot rank them; the
        cost to get there keeps ranking them, and is censored (inf) only for models the budget cannot fool."""
        part = table[table["variant"] == "fooling"] if "variant" in table else table
        return cost_headline(part, "median_steps_to_confidence", "gradient steps")


def cost_headline(table: pd.DataFrame, metric: str, what: str) -> Headline | None:
    """The headline of a fooling check: ``metric`` (a median cost) at the highest threshold, higher is safer."""
    rows = table[table["metric"] == metric]
    if rows.empty or "threshold" not in rows:
        return None
    thr = float(pd.to_numeric(rows["threshold"]).max())
    row = rows[pd.to_numeric(rows["threshold"]) == thr].iloc[0]
    label = f"median {what} to fool a class at {fooled_label(thr)}"
    if math.isinf(float(row["value"])):
        label += " (censored: most classes unreached within the budget)"
    head = Headline.from_row(row, label, "higher", "value")
    return dataclasses.replace(head, where={k: v for k, v in head.where.items() if k != "status"})

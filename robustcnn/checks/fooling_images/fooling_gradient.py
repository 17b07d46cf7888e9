"""``fooling-gradient``: images a model is sure of that no person would recognise.

Gradient ascent on a class's log-probability from noise (Nguyen, Yosinski & Clune 2015, sec. 3.3);
the optimisers live in ``robustcnn.methods.fooling.gradient``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import torch

from ...checks import AuditData, Check, CheckContext, CheckOutput, Headline, register
from ...errors import InvalidInputError
from ...methods.fooling.gradient import (
    DEFAULT_THRESHOLDS,
    GradientVariant,
    check_outputs,
    check_thresholds,
    fooled_label,
    fooled_share,
    gradient_fooling,
    image_shape,
    positive,
    resolve_classes,
    warn_if_probabilities,
)
from ...models import AuditedModel
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
    version = "1"
    order = 30

    @dataclass
    class Config:
        classes: list = field(default_factory=list)  # indices or names; empty = every class
        variants: list = field(default_factory=lambda: ["fooling", "prototype"])
        steps: int = 300
        step_size: float = 0.02
        l2_decay: float = 0.001
        thresholds: list = field(default_factory=lambda: list(DEFAULT_THRESHOLDS))
        stop_at: float = 0.99999
        prototype_steps: int = 200
        prototype_step_size: float = 0.01
        prototype_l2_decay: float = 0.02
        jitter: int = 1
        blur_every: int = 4
        blur_sigma: float = 0.8
        tv_weight: float = 0.0

        def validate(self) -> None:
            check = FoolingGradientCheck.name
            unknown = [v for v in self.variants if v not in ("fooling", "prototype")]
            if not self.variants or unknown:
                raise InvalidInputError(
                    f"[checks.{check}] variants must be a non-empty subset of ['fooling', 'prototype'], got {self.variants}"
                )
            for name in ("steps", "step_size", "prototype_steps", "prototype_step_size"):
                positive(name, getattr(self, name), check)
            for name in ("l2_decay", "prototype_l2_decay", "jitter", "blur_every", "blur_sigma", "tv_weight"):
                if getattr(self, name) < 0:
                    raise InvalidInputError(f"[checks.{check}] {name} must be >= 0, got {getattr(self, name)}")
            if not self.l2_decay < 1 or not self.prototype_l2_decay < 1:
                raise InvalidInputError(f"[checks.{check}] l2_decay and prototype_l2_decay must be below 1")
            check_thresholds(self.thresholds, check)
            if not 0.0 < self.stop_at <= 1.0:
                raise InvalidInputError(
                    f"[checks.{check}] stop_at must be in (0, 1] (1 = run every step), got {self.stop_at}"
                )

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
        self.config.validate()
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
            out.artifacts[f"{self.name}/images"] = images["fooling"]
        return out

    def headline(self, table: pd.DataFrame) -> Headline | None:
        part = table[table["variant"] == "fooling"] if "variant" in table else table
        got = fooled_share(part)
        return Headline(f"classes fooled at {fooled_label(got[0])} (gradient)", got[1], "lower") if got else None

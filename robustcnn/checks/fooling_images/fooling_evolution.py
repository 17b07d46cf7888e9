"""``fooling-evolution``: black-box evolved fooling images, direct and CPPN encodings (Nguyen et al. 2015)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import torch

from ...errors import InvalidInputError
from ...methods.fooling.cppn import CPPNEncoding, CPPNRates
from ...methods.fooling.direct import DirectEncoding
from ...methods.fooling.gradient import (
    DEFAULT_THRESHOLDS,
    check_outputs,
    check_thresholds,
    fooled_label,
    fooled_share,
    image_shape,
    log_probabilities,
    positive,
    resolve_classes,
    warn_if_probabilities,
)
from ...methods.fooling.map_elites import map_elites
from ...models import AuditedModel
from ...results.plots import image_grid
from ...results.schema import value
from .. import AuditData, Check, CheckContext, CheckOutput, Headline, batched, register

ENCODINGS = ("direct", "cppn")


@register
class FoolingEvolutionCheck(Check):
    name = "fooling-evolution"
    family = "fooling images"
    title = "Fooling images by evolution"
    description = (
        "MAP-Elites evolves one champion image per class using only the model's outputs (black-box): a direct "
        "encoding (one gene per pixel, evolves static) and a CPPN encoding (evolves regular patterns). Rows give each "
        "class's best confidence and the generations and model evaluations needed to pass each threshold (NaN, status "
        "'unreached', if never). Unrecognisable images classified at 99.99% mean high confidence is no evidence that "
        "an input is a real member of the class."
    )
    reference = (
        "Nguyen, Yosinski & Clune 2015, Deep neural networks are easily fooled (CVPR); Mouret & Clune 2015, "
        "Illuminating search spaces by mapping elites; Stanley 2007, Compositional pattern producing networks."
    )
    version = "1"
    order = 31

    @dataclass
    class Config:
        encodings: list = field(default_factory=lambda: list(ENCODINGS))
        classes: list = field(default_factory=list)  # indices or names; empty = every class
        population: int = 200
        generations: int = 200
        mutation_rate: float = 0.1
        halve_every: int = 1000
        eta: float = 15.0
        thresholds: list = field(default_factory=lambda: list(DEFAULT_THRESHOLDS))
        stop_at: float = 0.99999
        cppn_max_hidden: int = 32

        def validate(self) -> None:
            check = FoolingEvolutionCheck.name
            unknown = [e for e in self.encodings if e not in ENCODINGS]
            if not self.encodings or unknown:
                raise InvalidInputError(
                    f"[checks.{check}] encodings must be a non-empty subset of {list(ENCODINGS)}, got {self.encodings}"
                )
            for name in ("population", "generations", "halve_every", "eta", "cppn_max_hidden"):
                positive(name, getattr(self, name), check)
            if not 0.0 < self.mutation_rate <= 1.0:
                raise InvalidInputError(f"[checks.{check}] mutation_rate must be in (0, 1], got {self.mutation_rate}")
            check_thresholds(self.thresholds, check)
            if not 0.0 < self.stop_at <= 1.0:
                raise InvalidInputError(
                    f"[checks.{check}] stop_at must be in (0, 1] (1 = run every generation), got {self.stop_at}"
                )

    def encoding(self, name: str, shape: tuple[int, int, int], generator: torch.Generator, device: torch.device):
        c = self.config
        if name == "direct":
            return DirectEncoding(shape, c.mutation_rate, c.halve_every, c.eta, generator, device)
        return CPPNEncoding(shape, c.eta, generator, device, CPPNRates(max_hidden=c.cppn_max_hidden))

    def run(self, model: AuditedModel, data: AuditData, ctx: CheckContext) -> CheckOutput:
        self.config.validate()
        c = self.config
        check_outputs(model, data)
        classes = resolve_classes(c.classes, data.classes, self.name)
        warn_if_probabilities(model, ctx, self.name)
        shape = image_shape(model, data)

        def scores(images: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return log_probabilities(
                    batched(model, images.to(model.device), ctx.batch_size), model.outputs_probabilities
                ).cpu()

        out = CheckOutput(info={"seed": ctx.seed, "classes": [data.classes[k] for k in classes], "artifact_order": []})
        champions = []
        for name in c.encodings:
            gen = ctx.generator(self.name, name, device=str(model.device))
            trace, generations, evals = map_elites(
                self.encoding(name, shape, gen, model.device),
                scores,
                classes,
                shape,
                c.population,
                c.generations,
                c.thresholds,
                c.stop_at,
                gen,
            )
            out.rows += trace.rows(classes, data.classes, "generations", encoding=name)
            out.rows.append(value("generations_run", generations, None, encoding=name))
            out.rows.append(value("model_evaluations", evals, None, encoding=name))
            champions.append(trace.images)
            out.info["artifact_order"] += [f"{name}:{data.classes[k]}" for k in classes]
            out.figures[f"{self.name}-{name}"] = image_grid(
                trace.images,
                trace.grid_titles(classes, data.classes),
                suptitle=f"{name} encoding: champion per class after {generations} generations of {c.population} (seed {ctx.seed})",
            )
        out.artifacts[f"{self.name}/images"] = torch.cat(champions)
        return out

    def headline(self, table: pd.DataFrame) -> Headline | None:
        got = fooled_share(table)
        return Headline(f"classes fooled at {fooled_label(got[0])} (evolution)", got[1], "lower") if got else None

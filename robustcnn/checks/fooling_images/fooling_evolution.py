"""``fooling-evolution``: black-box evolved fooling images, direct and CPPN encodings (Nguyen et al. 2015)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ...artifacts import FOOLING_EVOLUTION_IMAGES
from ...estimate import CostInputs, Passes, Probe, Work
from ...methods.fooling.cppn import CPPNEncoding, CPPNRates
from ...methods.fooling.direct import DirectEncoding
from ...methods.fooling.gradient import (
    DEFAULT_THRESHOLDS,
    check_outputs,
    image_shape,
    log_probabilities,
    median_cost,
    resolve_classes,
    warn_if_probabilities,
)
from ...methods.fooling.map_elites import map_elites
from ...models import AuditedModel
from ...options import option
from ...results.plots import image_grid
from ...results.schema import value
from .. import AuditData, Check, CheckContext, CheckOutput, Headline, batched, register
from .fooling_gradient import cost_headline

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
    version = "2"
    provides = (FOOLING_EVOLUTION_IMAGES,)

    @dataclass
    class Config:
        encodings: list[str] = option(
            list(ENCODINGS), "which encodings to run, one MAP-Elites run each", choices=ENCODINGS, nonempty=True
        )
        classes: list[int | str] = option(
            [], "class indices or names (one archive cell each); [] = all; out of range is an error"
        )
        population: int = option(
            200, "children per generation (and size of the random generation 0)", range=">= 1", unit="images"
        )
        generations: int = option(
            200,
            "generations after generation 0 (at most); the run stops early when every class reaches stop_at",
            range=">= 1",
            unit="generations",
        )
        mutation_rate: float = option(
            0.1, "direct encoding: per-gene mutation probability at generation 0", range="(0, 1]"
        )
        halve_every: int = option(
            1000,
            "direct encoding: the rate halves every this many generations (the paper's schedule)",
            range=">= 1",
            unit="generations",
        )
        eta: float = option(
            15.0, "polynomial-mutation distribution index (both encodings; larger = smaller steps)", range="> 0"
        )
        thresholds: list[float] = option(
            list(DEFAULT_THRESHOLDS), "confidences whose first crossing is reported", range="(0, 1)", nonempty=True
        )
        stop_at: float = option(
            0.99999,
            "a class gets no more offspring once its champion reaches this; 1 runs every generation",
            range="(0, 1]",
        )
        cppn_max_hidden: int = option(32, "cap on CPPN hidden nodes", range=">= 1", unit="nodes")

    def estimate_passes(self, inputs: CostInputs) -> Passes:
        """The initial population and one per generation, per encoding (black-box: no backward);
        a run stops early once every class reaches ``stop_at``."""
        c = self.config
        forward = len(c.encodings) * c.population * (c.generations + 1)
        return Passes(forward, bound=c.stop_at < 1, batch=min(c.population, inputs.batch_size))

    def estimate_work(self, inputs: CostInputs, probe: Probe) -> Work:
        """Per encoding, breeding and rendering a population each generation (timed on a few random genomes
        and their offspring, scaled to the population; CPPNs that grow over the run cost more), and a grid of
        the classes' champions."""
        c, k = self.config, len(self.config.classes) or inputs.num_classes
        m = min(c.population, len(probe.x))
        seconds = 0.0
        for name in c.encodings:
            device = probe.model.device
            encoding = self.encoding(name, inputs.shape, torch.Generator(device).manual_seed(0), device)

            def generation(encoding=encoding) -> object:
                return encoding.render(encoding.mutate(encoding.random(m), 1))

            seconds += probe.timed(("breed", name, inputs.shape), generation) * c.population / m * (c.generations + 1)
        return Work(seconds, f"{len(c.encodings) * c.population * (c.generations + 1):,} bred images") + probe.figures(
            grids=[k] * len(c.encodings)
        )

    def encoding(self, name: str, shape: tuple[int, int, int], generator: torch.Generator, device: torch.device):
        c = self.config
        if name == "direct":
            return DirectEncoding(shape, c.mutation_rate, c.halve_every, c.eta, generator, device)
        return CPPNEncoding(shape, c.eta, generator, device, CPPNRates(max_hidden=c.cppn_max_hidden))

    def run(self, model: AuditedModel, data: AuditData, ctx: CheckContext) -> CheckOutput:
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
        champions, traces = [], []
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
            traces.append(trace)
            out.info["artifact_order"] += [f"{name}:{data.classes[k]}" for k in classes]
            out.figures[f"{self.name}-{name}"] = image_grid(
                trace.images,
                trace.grid_titles(classes, data.classes),
                suptitle=f"{name} encoding: champion per class after {generations} generations of {c.population} (seed {ctx.seed})",
            )
        if len(traces) > 1:  # per class the cheaper encoding: the worst case over the attacks run
            for j, thr in enumerate(c.thresholds):
                fewest = np.min([t.costs(j) for t in traces], axis=0)
                out.rows.append(median_cost(fewest, "median_generations_to_confidence", threshold=thr))
        out.artifacts.put(FOOLING_EVOLUTION_IMAGES, torch.cat(champions))
        return out

    def headline(self, table: pd.DataFrame) -> Headline | None:
        """Median generations to the highest threshold over the classes, per class the fewer of the encodings run
        (the row without ``encoding``; with one encoding, its own row). The share of classes fooled is 1 for
        nearly every undefended model; the cost keeps ranking them (Nguyen et al. report generations too)."""
        rows = table[table["metric"] == "median_generations_to_confidence"]
        if "encoding" in rows and rows["encoding"].isna().any():
            rows = rows[rows["encoding"].isna()]
        return cost_headline(rows, "median_generations_to_confidence", "generations")

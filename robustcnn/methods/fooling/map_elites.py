"""MAP-Elites with one archive cell per class (Mouret & Clune 2015; as used by Nguyen et al. 2015).

Each generation, ``population`` parents are drawn uniformly from the champions of the classes
still below ``stop_at`` (a class that has reached it gets no more offspring) and mutated; the children are rendered and scored in batched forward passes (model outputs only),
and a child replaces the champion of every class it scores higher on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

import torch

from .gradient import Trace

P = TypeVar("P")


class Encoding(Protocol, Generic[P]):
    """How genomes become images. ``P`` is a population: a batch of genomes."""

    name: str

    def random(self, n: int) -> P: ...

    def mutate(self, parents: P, generation: int) -> P: ...

    def render(self, population: P) -> torch.Tensor: ...

    def take(self, population: P, index: Sequence[int]) -> P: ...

    def replace(self, population: P, cells: Sequence[int], children: P, index: Sequence[int]) -> P: ...


def map_elites(
    encoding: Encoding[P],
    log_probs: Callable[[torch.Tensor], torch.Tensor],
    classes: list[int],
    shape: tuple[int, int, int],
    population: int,
    generations: int,
    thresholds: Sequence[float],
    stop_at: float,
    generator: torch.Generator,
) -> tuple[Trace, int, int]:
    """Evolve one champion per class; returns the trace, generations run and model evaluations spent.

    ``log_probs`` maps (N, C, H, W) images to (N, classes) log-probabilities. Generation 0 is the
    random initial population; the run stops early once every champion reaches ``stop_at`` (< 1).
    """
    k = len(classes)
    trace = Trace.empty(k, shape, thresholds)
    cells = torch.arange(k)
    target = torch.tensor(classes)
    pop = encoding.random(population)
    champions: P | None = None
    evals = 0
    generation = 0
    while True:
        images = encoding.render(pop)
        scores = log_probs(images)[:, target]  # (population, k)
        evals += len(images)
        best, who = scores.max(dim=0)
        better = trace.update(cells, best.exp(), images[who.to(images.device)], generation, evals)
        if champions is None:
            champions = encoding.take(pop, who.tolist())
        elif better.any():
            champions = encoding.replace(champions, cells[better].tolist(), pop, who[better].tolist())
        done = stop_at < 1.0 and bool((trace.best >= stop_at).all())
        if done or generation == generations:
            return trace, generation, evals
        generation += 1
        open_cells = cells[trace.best < stop_at] if stop_at < 1.0 else cells
        draw = torch.randint(len(open_cells), (population,), generator=generator, device=generator.device).cpu()
        parents = open_cells[draw].tolist()
        pop = encoding.mutate(encoding.take(champions, parents), generation)

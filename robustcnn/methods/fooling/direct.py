"""Direct encoding: one gene per pixel (Nguyen, Yosinski & Clune 2015, sec. 2.2).

Genomes start uniformly random in [0, 1]; each gene mutates with probability ``rate``, which
halves every ``halve_every`` generations, by polynomial mutation (Deb & Agrawal 1995) with
distribution index ``eta``. A population is one (N, C, H, W) tensor, mutated in one operation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def polynomial_mutation(x: torch.Tensor, u: torch.Tensor, eta: float, low: float, high: float) -> torch.Tensor:
    """Deb's polynomial mutation of ``x`` in [low, high] given uniform draws ``u``; result clipped to the bounds.

    The perturbation is ``delta * (high - low)`` with ``delta = (2u)^(1/(eta+1)) - 1`` for ``u < 0.5``
    and ``1 - (2(1-u))^(1/(eta+1))`` otherwise; larger ``eta`` gives smaller steps.
    """
    power = 1.0 / (eta + 1.0)
    delta = torch.where(u < 0.5, (2 * u).pow(power) - 1, 1 - (2 * (1 - u)).pow(power))
    return (x + delta * (high - low)).clamp(low, high)


class DirectEncoding:
    """Pixels as genes; see the module docstring."""

    name = "direct"

    def __init__(
        self,
        shape: tuple[int, int, int],
        rate: float,
        halve_every: int,
        eta: float,
        generator: torch.Generator,
        device: torch.device | str = "cpu",
    ) -> None:
        self.shape, self.rate, self.halve_every, self.eta = shape, rate, halve_every, eta
        self.generator, self.device = generator, device

    def rate_at(self, generation: int) -> float:
        return self.rate * 0.5 ** (generation // self.halve_every)

    def random(self, n: int) -> torch.Tensor:
        return torch.rand(n, *self.shape, generator=self.generator, device=self.device)

    def mutate(self, parents: torch.Tensor, generation: int) -> torch.Tensor:
        chosen = torch.rand(parents.shape, generator=self.generator, device=self.device) < self.rate_at(generation)
        u = torch.rand(parents.shape, generator=self.generator, device=self.device)
        return torch.where(chosen, polynomial_mutation(parents, u, self.eta, 0.0, 1.0), parents)

    def render(self, population: torch.Tensor) -> torch.Tensor:
        return population

    def take(self, population: torch.Tensor, index: Sequence[int]) -> torch.Tensor:
        return population[torch.tensor(list(index), dtype=torch.long, device=population.device)]

    def replace(
        self, population: torch.Tensor, cells: Sequence[int], children: torch.Tensor, index: Sequence[int]
    ) -> torch.Tensor:
        out = population.clone()
        out[torch.tensor(list(cells), device=out.device)] = children[torch.tensor(list(index), device=children.device)]
        return out

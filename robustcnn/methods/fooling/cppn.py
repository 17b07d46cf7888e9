"""Indirect encoding: compositional pattern-producing networks (Stanley 2007), as in Nguyen et al. 2015.

A CPPN maps each pixel's (x, y, distance to centre, bias) to one value per image channel
through a small graph of sine, sigmoid, Gaussian and linear nodes; its images are regular
patterns rather than static. Genomes start with no hidden nodes (every input wired to every
output) and grow by add/remove node and connection mutations; weights change by polynomial
mutation and node functions are resampled now and then. Mutation rates follow the paper's
MNIST setup. Any number of channels and any image size can be rendered, and a whole
population is rendered at once: each genome's graph is padded into one batched weight tensor.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .direct import polynomial_mutation

ACTIVATIONS = ("sine", "sigmoid", "gaussian", "linear")
N_INPUTS = 4  # x, y, d, bias
LINEAR_CLIP = 1e3


@dataclass(frozen=True)
class CPPNRates:
    """Per-child mutation probabilities and weight settings (Nguyen et al. 2015, MNIST runs)."""

    add_connection: float = 0.5
    remove_connection: float = 0.3
    add_node: float = 0.5
    remove_node: float = 0.2
    weight: float = 0.1  # per weight
    activation: float = 0.1  # per hidden node
    weight_bound: float = 10.0
    max_hidden: int = 32


@dataclass
class Genome:
    """Hidden nodes in topological order as (node id, activation index), and weighted connections.

    Node ids: 0-3 are the inputs, ``4 .. 4 + channels - 1`` the outputs, larger ids hidden nodes.
    """

    hidden: list[tuple[int, int]]
    conns: dict[tuple[int, int], float]
    next_id: int

    def copy(self) -> Genome:
        return Genome(list(self.hidden), dict(self.conns), self.next_id)


class CPPNEncoding:
    """A population is a list of genomes; ``render`` draws them all in one batched pass."""

    name = "cppn"

    def __init__(
        self,
        shape: tuple[int, int, int],
        eta: float,
        generator: torch.Generator,
        device: torch.device | str = "cpu",
        rates: CPPNRates = CPPNRates(),
    ) -> None:
        self.channels, self.height, self.width = shape
        self.eta, self.rates, self.device = eta, rates, device
        self.rng = random.Random(int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device)))
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, self.height), torch.linspace(-1, 1, self.width), indexing="ij")
        self.inputs = torch.stack([xs, ys, (xs**2 + ys**2).sqrt(), torch.ones_like(xs)]).flatten(1).to(device)

    @property
    def outputs(self) -> range:
        return range(N_INPUTS, N_INPUTS + self.channels)

    def random(self, n: int) -> list[Genome]:
        b = self.rates.weight_bound
        return [
            Genome(
                [],
                {(i, o): self.rng.uniform(-b, b) for i in range(N_INPUTS) for o in self.outputs},
                N_INPUTS + self.channels,
            )
            for _ in range(n)
        ]

    def take(self, population: list[Genome], index: Sequence[int]) -> list[Genome]:
        return [population[i] for i in index]

    def replace(
        self, population: list[Genome], cells: Sequence[int], children: list[Genome], index: Sequence[int]
    ) -> list[Genome]:
        out = list(population)
        for cell, i in zip(cells, index, strict=False):
            out[cell] = children[i]
        return out

    def mutate(self, parents: list[Genome], generation: int) -> list[Genome]:
        return [self._mutate(p) for p in parents]

    def _mutate(self, parent: Genome) -> Genome:
        g, r, rng = parent.copy(), self.rates, self.rng
        if rng.random() < r.add_connection:
            self._add_connection(g)
        if rng.random() < r.remove_connection and len(g.conns) > 1:
            del g.conns[rng.choice(list(g.conns))]
        if rng.random() < r.add_node and len(g.hidden) < r.max_hidden and g.conns:
            self._add_node(g)
        if rng.random() < r.remove_node and g.hidden:
            node = g.hidden.pop(rng.randrange(len(g.hidden)))[0]
            g.conns = {k: w for k, w in g.conns.items() if node not in k}
        g.hidden = [(n, rng.randrange(len(ACTIVATIONS)) if rng.random() < r.activation else a) for n, a in g.hidden]
        self._mutate_weights(g)
        return g

    def _add_connection(self, g: Genome) -> None:
        order = list(range(N_INPUTS)) + [n for n, _ in g.hidden]
        i = self.rng.randrange(len(order))
        targets = [n for n, _ in g.hidden[max(0, i - N_INPUTS + 1) :]] + list(self.outputs)
        dst = self.rng.choice(targets)
        if (order[i], dst) not in g.conns:
            g.conns[(order[i], dst)] = self.rng.uniform(-self.rates.weight_bound, self.rates.weight_bound)

    def _add_node(self, g: Genome) -> None:
        """Split a random connection src -> dst into src -> new -> dst (weights 1 and the old weight)."""
        src, dst = self.rng.choice(list(g.conns))
        weight = g.conns.pop((src, dst))
        node = g.next_id
        g.next_id += 1
        at = 0 if src < N_INPUTS else next(j for j, (n, _) in enumerate(g.hidden) if n == src) + 1
        g.hidden.insert(at, (node, self.rng.randrange(len(ACTIVATIONS))))
        g.conns[(src, node)] = 1.0
        g.conns[(node, dst)] = weight

    def _mutate_weights(self, g: Genome) -> None:
        if not g.conns:
            return
        keys = list(g.conns)
        chosen = [k for k in keys if self.rng.random() < self.rates.weight] or [self.rng.choice(keys)]
        b = self.rates.weight_bound
        w = torch.tensor([g.conns[k] for k in chosen], dtype=torch.float64)
        u = torch.tensor([self.rng.random() for _ in chosen], dtype=torch.float64)
        new = polynomial_mutation((w + b) / (2 * b), u, self.eta, 0.0, 1.0) * (2 * b) - b
        g.conns.update(zip(chosen, new.tolist(), strict=False))

    def render(self, population: list[Genome]) -> torch.Tensor:
        """Images (N, C, H, W) in [0, 1]: each output node's sigmoid, one node position at a time for all genomes."""
        n, c = len(population), self.channels
        width = max((len(g.hidden) for g in population), default=0)
        size = N_INPUTS + width + c
        rows, dsts, srcs, weights = [], [], [], []
        act = [[ACTIVATIONS.index("linear")] * size for _ in range(n)]
        for p, g in enumerate(population):
            pos = {i: i for i in range(N_INPUTS)}
            pos.update({o: N_INPUTS + width + j for j, o in enumerate(self.outputs)})
            for j, (node, a) in enumerate(g.hidden):
                pos[node] = N_INPUTS + j
                act[p][N_INPUTS + j] = a
            for (s, d), w in g.conns.items():
                rows.append(p)
                dsts.append(pos[d])
                srcs.append(pos[s])
                weights.append(w)
        mat = torch.zeros(n, size, size, device=self.device)
        mat[
            torch.tensor(rows, dtype=torch.long),
            torch.tensor(dsts, dtype=torch.long),
            torch.tensor(srcs, dtype=torch.long),
        ] = torch.tensor(weights, dtype=torch.float32).to(self.device)
        kinds = torch.tensor(act, device=self.device)
        values = torch.zeros(n, N_INPUTS + width, self.inputs.shape[1], device=self.device)
        values[:, :N_INPUTS] = self.inputs
        for j in range(N_INPUTS, N_INPUTS + width):
            pre = torch.bmm(mat[:, j : j + 1, :j], values[:, :j]).squeeze(1)
            values[:, j] = _activate(pre, kinds[:, j])
        out = torch.bmm(mat[:, N_INPUTS + width :, : N_INPUTS + width], values)
        return torch.sigmoid(out).view(n, c, self.height, self.width)


def _activate(pre: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
    """Apply each row's node function: sine, sigmoid, Gaussian exp(-x^2) or linear (clipped to +-1e3)."""
    out = pre.clamp(-LINEAR_CLIP, LINEAR_CLIP)
    for index, fn in ((0, torch.sin), (1, torch.sigmoid), (2, lambda v: torch.exp(-v.square()))):
        rows = (which == index).nonzero().squeeze(1)
        if len(rows):
            out[rows] = fn(pre[rows])
    return out

"""The attack cascade: run named attacks one after another on the inputs still unbroken,
keep for every input the smallest adversarial perturbation any attack found, and read the
robust-accuracy curve off those per-input minima (the pointwise worst case over attacks).

Minimal-norm attacks (FMN, DDN, CW, DeepFool) go first and give a whole curve at once.
A fixed-epsilon attack (APGD-CE, APGD-T, Square) then attacks each input at the largest epsilon of the
grid it still survives; where it succeeds, the input goes on to the next smaller epsilon,
where it fails the input is done (a smaller ball lies inside the larger one). FGSM and PGD,
not monotone in epsilon, attack every epsilon an input survives.
*Survivor* attacks (by default APGD-DLR with 100 steps and Square with 5000 queries, the
costly last stand) only start on inputs that survive the largest epsilon, then descend the
same way: the budget goes where robustness is claimed.
Every success is re-checked here: misclassified, inside the box and inside the ball.
Random draws come from per-input streams (``SampleStreams``), forked per norm, attack and
descent level, so an input's attacks do not depend on the other inputs of its batch.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from ...seeding import SampleStreams
from .geometry import lp_norm
from .library import ATTACKS, AttackSettings

TOL = 1e-6  # pixel units: a perturbation counts at eps if its norm is at most eps + TOL


class CountedView(nn.Module):
    """The model as attacks see it: logits, counted in images forward and backward.

    A model whose outputs are probabilities is turned into log-probabilities (clamped at
    1e-30), which are valid logits for every loss used here.
    """

    def __init__(self, model: nn.Module, probabilities: bool = False) -> None:
        super().__init__()
        self.model = model
        self.probabilities = probabilities
        self.forward_images = 0
        self.backward_images = 0
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forward_images += len(x)
        if torch.is_grad_enabled() and x.requires_grad:
            self.backward_images += len(x)
        out = self.model(x)
        return out.clamp_min(1e-30).log() if self.probabilities else out

    @torch.no_grad()
    def logits(self, x: torch.Tensor, batch_size: int) -> torch.Tensor:
        parts = [self(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        return torch.cat(parts) if parts else x.new_zeros(0, 0)


@dataclass
class AttackCost:
    """What one attack of the cascade spent and achieved on one norm."""

    attack: str
    norm: str
    images: int
    improved: int
    forward: int
    backward: int
    seconds: float


@dataclass
class NormResult:
    """Per-input results for one norm: smallest adversarial found, by which attack, and the curve."""

    norm: str
    eps: tuple[float, ...]
    min_norm: torch.Tensor
    found_by: list[str]
    adversarial: torch.Tensor
    adv_logits: torch.Tensor
    costs: list[AttackCost] = field(default_factory=list)

    @property
    def robust(self) -> torch.Tensor:
        """(N, len(eps)) booleans: no adversarial found within each epsilon."""
        eps = torch.tensor(self.eps, dtype=self.min_norm.dtype)
        return self.min_norm.cpu()[:, None] > eps[None, :] + TOL

    def robust_accuracy(self) -> dict[float, float]:
        rob = self.robust.float().mean(0) if len(self.min_norm) else torch.full((len(self.eps),), math.nan)
        return {e: float(r) for e, r in zip(self.eps, rob, strict=False)}


def _target(min_norm: torch.Tensor, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The largest positive epsilon each input still survives, and whether there is one."""
    below = grid[None, :] < (min_norm[:, None] - TOL)
    has = below.any(dim=1)
    index = (below.sum(dim=1) - 1).clamp_min(0)
    return grid[index], has


class Cascade:
    """Runs the attacks for one norm on a batch of inputs and keeps the per-input minima."""

    def __init__(
        self,
        view: CountedView,
        x: torch.Tensor,
        y: torch.Tensor,
        clean_logits: torch.Tensor,
        norm: str,
        eps: tuple[float, ...],
        settings: AttackSettings,
        streams: SampleStreams,
        batch_size: int,
        survivors: frozenset[str] = frozenset(),
    ) -> None:
        self.view, self.x, self.y, self.norm, self.eps = view, x, y, norm, eps
        self.settings, self.streams, self.batch_size, self.survivors = (
            settings,
            streams.to(x.device),
            batch_size,
            survivors,
        )
        correct = clean_logits.argmax(1).to(y.device) == y
        self.min_norm = torch.where(
            correct, torch.full_like(y, math.inf, dtype=x.dtype), torch.zeros_like(y, dtype=x.dtype)
        )
        self.found_by = ["" if c else "clean" for c in correct.tolist()]
        self.adversarial = x.clone()
        self.adv_logits = clean_logits.to(x.device).clone()
        self.grid = torch.tensor(sorted(e for e in eps if e > 0), dtype=x.dtype, device=x.device)
        self.costs: list[AttackCost] = []

    def run(self, names: list[str]) -> NormResult:
        for name in names:
            if self.norm in ATTACKS[name].norms:
                self._run_one(name)
        return NormResult(
            self.norm,
            self.eps,
            self.min_norm.cpu(),
            self.found_by,
            self.adversarial.cpu(),
            self.adv_logits.cpu(),
            self.costs,
        )

    def _run_one(self, name: str) -> None:
        attack = ATTACKS[name]
        f0, b0, t0 = self.view.forward_images, self.view.backward_images, time.perf_counter()
        before = self.min_norm.clone()
        if attack.minimal:
            floor = self.grid[0] if len(self.grid) else torch.tensor(0.0)
            todo = torch.nonzero(self.min_norm > floor + TOL).flatten()
            attacked = len(todo)
            streams = self.streams.fork(name)
            for part in todo.split(self.batch_size):
                adv = attack.run(
                    self.view,
                    self.x[part],
                    self.y[part],
                    self.norm,
                    self.settings,
                    streams.subset(part),
                    self.adv_logits.shape[1],
                )
                self._accept(name, part, adv, None)
        else:
            attacked = self._descend(name)
        self.costs.append(
            AttackCost(
                name,
                self.norm,
                attacked,
                int((self.min_norm < before).sum()),
                self.view.forward_images - f0,
                self.view.backward_images - b0,
                time.perf_counter() - t0,
            )
        )

    def _descend(self, name: str) -> int:
        attack = ATTACKS[name]
        if attack.every_eps:
            return self._every_eps(name)
        eps, active = _target(self.min_norm, self.grid)
        if name in self.survivors and len(self.grid):
            active &= self.min_norm > self.grid[-1] + TOL
        attacked, level = int(active.sum()), 0
        while active.any():
            todo = torch.nonzero(active).flatten()
            broken = torch.zeros_like(active)
            streams = self.streams.fork(name, level)
            for part in todo.split(self.batch_size):
                adv = attack.run(
                    self.view, self.x[part], self.y[part], eps[part], self.norm, self.settings, streams.subset(part)
                )
                broken[part] = self._accept(name, part, adv, eps[part])
            eps, has = _target(self.min_norm, self.grid)
            active = broken & has
            level += 1
        return attacked

    def _every_eps(self, name: str) -> int:
        """Attack every input at every epsilon it still survives, largest first."""
        attack, attacked = ATTACKS[name], 0
        for level, value in enumerate(self.grid.flip(0)):
            todo = torch.nonzero(self.min_norm > value + TOL).flatten()
            attacked = max(attacked, len(todo))
            streams = self.streams.fork(name, level)
            for part in todo.split(self.batch_size):
                eps = value.expand(len(part))
                adv = attack.run(
                    self.view, self.x[part], self.y[part], eps, self.norm, self.settings, streams.subset(part)
                )
                self._accept(name, part, adv, eps)
        return attacked

    def _accept(self, name: str, part: torch.Tensor, adv: torch.Tensor, limit: torch.Tensor | None) -> torch.Tensor:
        """Keep verified adversarials that beat the input's current minimum; returns which did."""
        adv = adv.detach().to(self.x.dtype)
        with torch.no_grad():
            logits = self.view(adv)
        norms = lp_norm(adv - self.x[part], self.norm)
        ok = (logits.argmax(1) != self.y[part]) & (adv >= 0).flatten(1).all(1) & (adv <= 1).flatten(1).all(1)
        ok &= torch.isfinite(norms) & (norms < self.min_norm[part])
        if limit is not None:
            ok &= norms <= limit + TOL
        chosen = part[ok]
        self.min_norm[chosen] = norms[ok]
        self.adversarial[chosen] = adv[ok]
        self.adv_logits[chosen] = logits[ok].to(self.adv_logits.dtype)
        for i in chosen.tolist():
            self.found_by[i] = name
        return ok

"""The named attacks a plan can select: foolbox's (FGSM, PGD, CW, DeepFool, FMN, DDN) and
our own APGD and Square, behind one calling convention.

FMN is used for L-inf only: foolbox 3.3.4's ``L2FMNAttack`` never projects onto its ball
(its scaling factor is ``norms / norms``), so DDN is the minimal-norm attack for L2.

Two kinds: *minimal* attacks return one adversarial per input, as close as they can find
(FMN, DDN, CW, DeepFool); *fixed* attacks search inside a ball of a given radius per input
(FGSM, PGD, APGD, Square). ``every_eps`` attacks (FGSM, PGD) are run at every epsilon an
input still survives, since a one-step or fixed-step attack is not monotone in epsilon; the
others descend from the largest. Every returned point is re-checked by the cascade.

Each attack gets per-input random streams (``SampleStreams``). Ours (APGD, Square) and PGD's
random start draw from them, so those results do not depend on the batch. Foolbox's other
attacks draw nothing random, except DDN, which replaces an exactly zero gradient by a Gaussian
draw from torch's global generator; that generator is seeded from the batch's inputs, so only
an input whose cross-entropy gradient vanishes (a logit margin beyond about 100) can depend on
which inputs share its batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import eagerpy as ep
import foolbox as fb
import torch
from torch import nn

from ...options import option
from ...seeding import SampleStreams
from .apgd import apgd
from .geometry import random_in_ball
from .square import square_attack


@dataclass(frozen=True)
class AttackSettings:
    """Iteration budgets of the attacks.

    FMN keeps foolbox's 100 steps, so the cascade is never weaker than FMN alone. The APGD
    sweep is short (CE 10 steps, targeted DLR 12 steps for each of 3 runner-up classes; Croce &
    Hein use 100, torchattacks' AutoAttack 10 per target for 9) since it only re-attacks, at the
    grid epsilon just below each input's minimal norm, what FMN left standing. The survivor
    stage spends AutoAttack-sized budgets (APGD-DLR 100 steps, Square 5000 queries) only on
    inputs that survive the largest epsilon. See benchmarks/bench_adversarial.py for the
    strength and cost this buys. PGD, CW and DeepFool follow foolbox (CW with a shorter search).
    """

    fmn_steps: int = option(100, "FMN iterations (minimal-norm attack, L-inf)", range=">= 1", unit="steps")
    ddn_steps: int = option(50, "DDN iterations (minimal-norm attack, L2)", range=">= 1", unit="steps")
    apgd_steps: int = option(
        10,
        "APGD-CE iterations in the sweep (Croce & Hein use 100; the sweep only re-attacks what FMN/DDN left, "
        "just below each image's minimal norm)",
        range=">= 1",
        unit="steps",
    )
    apgd_targets: int = option(
        3, "APGD-T: runner-up classes targeted in turn (AutoAttack standard: 9)", range=">= 1", unit="classes"
    )
    apgd_target_steps: int = option(12, "APGD-T iterations per target (torchattacks: 10)", range=">= 1", unit="steps")
    apgd_dlr_steps: int = option(100, "APGD-DLR iterations (survivor stage)", range=">= 1", unit="steps")
    square_queries: int = option(
        5000, "Square's query budget per image and epsilon (AutoAttack's)", range=">= 1", unit="queries"
    )
    square_p_init: float = option(0.8, "Square's initial square size", range="(0, 1]", unit="fraction of pixels")
    pgd_steps: int = option(40, "iterations of the named attack pgd (foolbox)", range=">= 1", unit="steps")
    cw_steps: int = option(100, "iterations of the named attack cw (foolbox)", range=">= 1", unit="steps")
    cw_binary_steps: int = option(5, "binary-search steps of cw over its constant", range=">= 1", unit="steps")
    deepfool_steps: int = option(50, "iterations of the named attack deepfool (foolbox)", range=">= 1", unit="steps")


@dataclass(frozen=True)
class Attack:
    name: str
    minimal: bool
    norms: tuple[str, ...]
    every_eps: bool
    whitebox: bool
    paper: str
    run: Callable[..., torch.Tensor]


def _fmodel(model: nn.Module, x: torch.Tensor) -> fb.PyTorchModel:
    return fb.PyTorchModel(model, bounds=(0.0, 1.0), device=x.device)


def _seeded(streams: SampleStreams, x: torch.Tensor, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Run a foolbox attack with torch's global generator seeded from the batch, leaving the caller's state intact."""
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(streams.batch_seed())
        return fn()


def _start_from(attack: fb.attacks.base.FixedEpsilonAttack, streams: SampleStreams, norm: str) -> None:
    """Make a foolbox gradient attack draw its random start from per-input streams (uniform in the
    L-inf box; for L2 a random direction at radius eps, where foolbox draws uniformly in the ball)."""

    def start(x0: ep.Tensor, epsilon: float) -> ep.Tensor:
        eps = torch.full((len(x0.raw),), epsilon, dtype=x0.raw.dtype, device=x0.raw.device)
        return ep.astensor(random_in_ball(x0.raw, eps, norm, streams))

    if getattr(attack, "random_start", False):
        attack.get_random_start = start


def _foolbox_fixed(
    linf: Callable[[AttackSettings], fb.attacks.base.FixedEpsilonAttack],
    l2: Callable[[AttackSettings], fb.attacks.base.FixedEpsilonAttack],
) -> Callable[..., torch.Tensor]:
    def run(
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: torch.Tensor,
        norm: str,
        settings: AttackSettings,
        streams: SampleStreams,
    ) -> torch.Tensor:
        out = x.clone()
        for value in torch.unique(eps):
            part = eps == value
            attack = (linf if norm == "linf" else l2)(settings)
            _start_from(attack, streams.subset(part), norm)
            crit = fb.criteria.Misclassification(y[part])
            out[part] = _seeded(
                streams.subset(part),
                x,
                lambda attack=attack, part=part, crit=crit, value=value: attack.run(
                    _fmodel(model, x), x[part], crit, epsilon=float(value)
                ),
            )
        return out

    return run


def _apgd(loss: str) -> Callable[..., torch.Tensor]:
    def run(
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: torch.Tensor,
        norm: str,
        settings: AttackSettings,
        streams: SampleStreams,
    ) -> torch.Tensor:
        steps = settings.apgd_dlr_steps if loss == "dlr" else settings.apgd_steps
        return apgd(model, x, y, eps, norm, loss, steps, streams).adversarial

    return run


def _apgd_targeted(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: torch.Tensor,
    norm: str,
    settings: AttackSettings,
    streams: SampleStreams,
) -> torch.Tensor:
    """APGD-T as in AutoAttack: targeted DLR towards each of the ``apgd_targets`` runner-up
    classes in turn (by clean logit), each on the inputs the previous targets left unbroken."""
    with torch.no_grad():
        ranked = model(x).scatter(1, y[:, None], float("-inf")).argsort(dim=1, descending=True)
    out, done = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for rank in range(min(settings.apgd_targets, ranked.shape[1] - 1)):
        todo = torch.nonzero(~done).flatten()
        if not len(todo):
            break
        gen = streams.fork("target", rank).subset(todo)
        run = apgd(
            model,
            x[todo],
            y[todo],
            eps[todo],
            norm,
            "dlr-t",
            settings.apgd_target_steps,
            gen,
            target=ranked[todo, rank],
        )
        out[todo], done[todo] = run.adversarial, run.success
    return out


def _square(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: torch.Tensor,
    norm: str,
    settings: AttackSettings,
    streams: SampleStreams,
) -> torch.Tensor:
    return square_attack(model, x, y, eps, norm, settings.square_queries, settings.square_p_init, streams).adversarial


def _minimal(
    make: Callable[[AttackSettings, str, int], fb.attacks.base.MinimizationAttack],
) -> Callable[..., torch.Tensor]:
    def run(
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        norm: str,
        settings: AttackSettings,
        streams: SampleStreams,
        num_classes: int,
    ) -> torch.Tensor:
        attack = make(settings, norm, num_classes)
        return _seeded(streams, x, lambda: attack.run(_fmodel(model, x), x, fb.criteria.Misclassification(y)))

    return run


def _deepfool(s: AttackSettings, norm: str, num_classes: int) -> fb.attacks.base.MinimizationAttack:
    kind = fb.attacks.LinfDeepFoolAttack if norm == "linf" else fb.attacks.L2DeepFoolAttack
    return kind(steps=s.deepfool_steps, candidates=min(10, num_classes))


BOTH = ("linf", "l2")
ATTACKS: dict[str, Attack] = {
    a.name: a
    for a in (
        Attack(
            "fmn",
            True,
            ("linf",),
            False,
            True,
            "Pintor et al. 2021 (foolbox LInfFMNAttack)",
            _minimal(lambda s, norm, k: fb.attacks.LInfFMNAttack(steps=s.fmn_steps)),
        ),
        Attack(
            "ddn",
            True,
            ("l2",),
            False,
            True,
            "Rony et al. 2019 (foolbox DDNAttack)",
            _minimal(lambda s, norm, k: fb.attacks.DDNAttack(steps=s.ddn_steps)),
        ),
        Attack(
            "cw",
            True,
            ("l2",),
            False,
            True,
            "Carlini & Wagner 2017 (foolbox L2CarliniWagnerAttack)",
            _minimal(
                lambda s, norm, k: fb.attacks.L2CarliniWagnerAttack(
                    binary_search_steps=s.cw_binary_steps, steps=s.cw_steps, initial_const=1e-2
                )
            ),
        ),
        Attack("deepfool", True, BOTH, False, True, "Moosavi-Dezfooli et al. 2016 (foolbox)", _minimal(_deepfool)),
        Attack(
            "fgsm",
            False,
            BOTH,
            True,
            True,
            "Goodfellow et al. 2014 (foolbox FGSM / FGM)",
            _foolbox_fixed(lambda s: fb.attacks.FGSM(), lambda s: fb.attacks.FGM()),
        ),
        Attack(
            "pgd",
            False,
            BOTH,
            True,
            True,
            "Madry et al. 2017 (foolbox LinfPGD / L2PGD)",
            _foolbox_fixed(
                lambda s: fb.attacks.LinfPGD(steps=s.pgd_steps), lambda s: fb.attacks.L2PGD(steps=s.pgd_steps)
            ),
        ),
        Attack("apgd-ce", False, BOTH, False, True, "Croce & Hein 2020, cross-entropy loss", _apgd("ce")),
        Attack(
            "apgd-dlr",
            False,
            BOTH,
            False,
            True,
            "Croce & Hein 2020, DLR loss (margin loss below 3 classes)",
            _apgd("dlr"),
        ),
        Attack(
            "apgd-t",
            False,
            BOTH,
            False,
            True,
            "Croce & Hein 2020, targeted DLR loss over the runner-up classes (targeted margin below 4 classes)",
            _apgd_targeted,
        ),
        Attack("square", False, BOTH, False, False, "Andriushchenko et al. 2020, score-based", _square),
    )
}
DEFAULT_ATTACKS = ("fmn", "ddn", "apgd-ce", "apgd-t", "apgd-dlr", "square")
DEFAULT_SURVIVOR_ATTACKS = ("apgd-dlr", "square")

"""The public entry point: given a model and a batch, per-input minimal adversarial norms and
robust flags per epsilon, for L-inf and L2, from the attack cascade."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ...errors import InvalidInputError
from ...seeding import SampleStreams, sample_keys
from .bpda import MaskingResponse, SurrogateView, check_bpda, find_modules, respond
from .cascade import Cascade, CountedView, NormResult
from .epsilons import check_eps, check_norm, default_eps
from .library import ATTACKS, DEFAULT_ATTACKS, DEFAULT_SURVIVOR_ATTACKS, AttackSettings


@dataclass
class PerturbationResult:
    """Clean predictions and one ``NormResult`` per norm (``min_norm``, ``robust``, ``adversarial``)."""

    labels: torch.Tensor
    clean_logits: torch.Tensor
    norms: dict[str, NormResult]
    probabilities: bool
    masking: MaskingResponse = field(default_factory=MaskingResponse)

    @property
    def correct(self) -> torch.Tensor:
        return self.clean_logits.argmax(1) == self.labels

    def min_norm(self, norm: str) -> torch.Tensor:
        return self.norms[norm].min_norm

    def robust(self, norm: str) -> torch.Tensor:
        return self.norms[norm].robust

    def robust_accuracy(self, norm: str) -> dict[float, float]:
        return self.norms[norm].robust_accuracy()


def check_attacks(attacks: Iterable[str], norms: Sequence[str]) -> list[str]:
    """Validated attack names; every norm must have at least one attack that supports it."""
    names = list(attacks)
    unknown = [a for a in names if a not in ATTACKS]
    if unknown:
        raise InvalidInputError(f"unknown attack {', '.join(map(repr, unknown))}; known: {', '.join(ATTACKS)}")
    if not names:
        raise InvalidInputError(f"attacks is empty; name at least one of: {', '.join(ATTACKS)}")
    for norm in norms:
        if not any(norm in ATTACKS[a].norms for a in names):
            fits = ", ".join(a for a, spec in ATTACKS.items() if norm in spec.norms)
            raise InvalidInputError(f"none of the attacks {names} works in the {norm} norm; add one of: {fits}")
    return list(dict.fromkeys(names))


def check_survivors(names: Iterable[str]) -> frozenset[str]:
    """Attacks that only start on inputs surviving the largest epsilon: fixed-epsilon ones only."""
    names = list(names)
    unknown = [a for a in names if a not in ATTACKS]
    if unknown:
        raise InvalidInputError(f"unknown survivor attack {', '.join(map(repr, unknown))}; known: {', '.join(ATTACKS)}")
    minimal = [a for a in names if ATTACKS[a].minimal]
    if minimal:
        raise InvalidInputError(
            f"survivor_attacks {minimal} are minimal-norm attacks, which always run on every input; list only fixed-epsilon attacks"
        )
    return frozenset(names)


def resolve_eps(
    norms: Sequence[str], eps: Mapping[str, Sequence[float]] | Sequence[float] | None, shape: tuple[int, int, int]
) -> dict[str, tuple[float, ...]]:
    """Epsilon grid per norm: the given lists (a bare list needs exactly one norm) or the defaults for ``shape``."""
    if eps is not None and not isinstance(eps, Mapping):
        if len(norms) != 1:
            raise InvalidInputError(
                "a bare eps list is ambiguous with several norms; pass {'linf': [...], 'l2': [...]}"
            )
        eps = {norms[0]: eps}
    given = dict(eps or {})
    for norm in given:
        check_norm(norm)
    return {n: check_eps(n, given[n], shape) if given.get(n) is not None else default_eps(n, shape) for n in norms}


def looks_like_probabilities(outputs: torch.Tensor) -> bool:
    rows = outputs.sum(dim=1)
    return bool(len(outputs)) and bool((outputs >= 0).all()) and torch.allclose(rows, torch.ones_like(rows), atol=1e-4)


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    norms: Sequence[str] = ("linf", "l2"),
    eps: Mapping[str, Sequence[float]] | Sequence[float] | None = None,
    attacks: Sequence[str] = DEFAULT_ATTACKS,
    settings: AttackSettings | None = None,
    seed: int = 0,
    batch_size: int = 256,
    survivor_attacks: Sequence[str] = DEFAULT_SURVIVOR_ATTACKS,
    bpda: str = "auto",
    bpda_modules: Sequence[str] = (),
    masking_threshold: float = 0.02,
    keys: torch.Tensor | None = None,
) -> PerturbationResult:
    """Attack ``x`` ([0, 1] NCHW) with the cascade and return per-input minimal norms and robust flags.

    ``model`` returns logits (probabilities are detected and turned into log-probabilities).
    Without labels ``y`` the model's own clean predictions are attacked, so the curve then
    measures how stable its decisions are rather than robust accuracy. ``survivor_attacks``
    only start on inputs still unbroken at the largest epsilon. Random draws come from one
    stream per input, keyed by ``keys`` ((N,) int64, e.g. ``seeding.sample_keys`` of sample ids)
    or else by ``seed`` and the input's position, so an input's result does not depend on the
    batch size or the other inputs.

    Gradient masking (Athalye, Carlini & Wagner 2018): with ``bpda="auto"``, when the model applies
    non-differentiable operations to its input or its margin gradient is zero on more than
    ``masking_threshold`` of the correctly classified inputs, gradient attacks run through BPDA
    surrogates (see ``bpda.py``) and the gradient-free survivor attacks (Square) start on every input
    still robust, as AutoAttack runs them. ``"on"`` always does so, ``"off"`` never; ``bpda_modules``
    names preprocessing submodules to treat as the identity in the backward pass (and implies "on").
    """
    if x.dim() != 4:
        raise InvalidInputError(f"images must be (N, C, H, W), got shape {tuple(x.shape)}")
    if len(x) and (x.min() < 0 or x.max() > 1 or not torch.isfinite(x).all()):
        raise InvalidInputError("images must be finite pixels in [0, 1]; the model wrapper does any normalisation")
    survivors = check_survivors(survivor_attacks)
    check_bpda(bpda, bpda_modules)
    modules = find_modules(model, bpda_modules)
    norms = list(dict.fromkeys(norms))
    for norm in norms:
        check_norm(norm)
    names = check_attacks(attacks, norms)
    grids = resolve_eps(norms, eps, tuple(x.shape[1:]))
    device = _device(model, x)
    x = x.to(device, torch.float32)
    probabilities = bool(getattr(model, "outputs_probabilities", False))
    view = CountedView(model, probabilities)
    with torch.no_grad():
        raw = torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]) if len(x) else None
    if raw is None:
        raise InvalidInputError("no images to attack")
    if raw.dim() != 2:
        raise InvalidInputError(f"the model returned shape {tuple(raw.shape)}, expected (N, classes) logits")
    if raw.shape[1] < 2:
        raise InvalidInputError("the model has fewer than 2 classes; there is no decision to flip")
    if not probabilities and looks_like_probabilities(raw):
        probabilities = view.probabilities = True
    clean_logits = raw.clamp_min(1e-30).log() if probabilities else raw
    labels = clean_logits.argmax(1) if y is None else torch.as_tensor(y).to(device).long()
    if labels.shape != (len(x),) or labels.min() < 0 or labels.max() >= clean_logits.shape[1]:
        raise InvalidInputError(f"labels must be {len(x)} class indices in [0, {clean_logits.shape[1] - 1}]")
    settings = settings or AttackSettings()
    if keys is None:
        keys = sample_keys(seed, [str(i) for i in range(len(x))], "evaluate")
    if keys.shape != (len(x),):
        raise InvalidInputError(f"keys must be one int64 per image, got shape {tuple(keys.shape)}")
    streams = SampleStreams(keys)
    correct = clean_logits.argmax(1) == labels
    masking = respond(model, view, x, labels, correct, bpda, bool(modules), masking_threshold, batch_size)
    if masking.bpda:
        view = SurrogateView(model, probabilities, modules)
    if masking.square_everywhere:
        survivors = frozenset(a for a in survivors if ATTACKS[a].whitebox)
    results = {
        norm: Cascade(
            view, x, labels, clean_logits, norm, grids[norm], settings, streams.fork(norm), batch_size, survivors
        ).run(names)
        for norm in norms
    }
    return PerturbationResult(labels.cpu(), clean_logits.cpu(), results, probabilities, masking)


def _device(model: nn.Module, x: torch.Tensor) -> torch.device:
    for tensor in list(model.parameters())[:1] + list(model.buffers())[:1]:
        return tensor.device
    return x.device


__all__ = [
    "PerturbationResult",
    "check_attacks",
    "check_survivors",
    "evaluate",
    "looks_like_probabilities",
    "resolve_eps",
]

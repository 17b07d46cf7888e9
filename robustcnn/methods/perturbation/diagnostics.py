"""Gradient-masking diagnostics in the spirit of AutoAttack's checks (Croce & Hein 2020;
Athalye, Carlini & Wagner 2018, "Obfuscated gradients give a false sense of security").

Per input: is the input gradient of the cross-entropy / margin loss exactly zero, does a
plain gradient attack fail even with an unbounded budget (L-inf eps = 1, the whole box),
and do two identical forward passes disagree. The summary turns these, the black-box gain
(inputs only the score-based Square attack broke) and probability outputs into warnings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .apgd import apgd, loss_and_grad
from .cascade import CountedView
from .losses import cross_entropy, margin

WARNING_PREFIX = "possible gradient masking"


@dataclass
class MaskingProbe:
    """Per-input diagnostics: (N,) tensors; ``unbounded_robust`` is nan where not tested."""

    zero_grad_ce: torch.Tensor
    zero_grad_margin: torch.Tensor
    unbounded_robust: torch.Tensor
    nondeterminism: torch.Tensor


def probe(
    view: CountedView,
    x: torch.Tensor,
    y: torch.Tensor,
    correct: torch.Tensor,
    batch_size: int,
    unbounded: torch.Tensor,
    unbounded_steps: int = 10,
) -> MaskingProbe:
    """Run the per-input diagnostics on correctly classified inputs (others get nan); the unbounded-budget
    attack only on those flagged in ``unbounded`` ((N,) booleans)."""
    n = len(x)
    zero_ce = torch.full((n,), math.nan)
    zero_margin = torch.full((n,), math.nan)
    flagged, unbounded = unbounded.to(x.device), torch.full((n,), math.nan)
    drift = torch.full((n,), math.nan)
    todo = torch.nonzero(correct.to(x.device)).flatten()
    for part in todo.split(batch_size):
        _, _, g_ce = loss_and_grad(view, x[part], y[part], cross_entropy)
        _, logits, g_margin = loss_and_grad(view, x[part], y[part], lambda z, t: -margin(z, t))
        with torch.no_grad():
            again = view(x[part])
        zero_ce[part.cpu()] = (g_ce.flatten(1).abs().amax(1) == 0).float().cpu()
        zero_margin[part.cpu()] = (g_margin.flatten(1).abs().amax(1) == 0).float().cpu()
        drift[part.cpu()] = (again - logits).abs().amax(1).float().cpu()
    tested = todo[flagged[todo]]
    if len(tested):
        run = apgd(view, x[tested], y[tested], 1.0, "linf", "ce", unbounded_steps, random_start=False)
        unbounded[tested.cpu()] = (~run.success).float().cpu()
    return MaskingProbe(zero_ce, zero_margin, unbounded, drift)


def masking_warnings(
    zero_ce: float,
    zero_margin: float,
    unbounded: float,
    blackbox: dict[str, float],
    probabilities: bool,
    drift: float,
    threshold: float,
    ops: tuple[str, ...] = (),
) -> list[str]:
    """One line per symptom that crosses ``threshold`` (shares of correctly classified inputs);
    ``ops``: non-differentiable operations seen on the model's input path."""
    out = []
    if ops:
        out.append(
            f"{WARNING_PREFIX}: the model applies non-differentiable operations to its input ({', '.join(ops)}); "
            "gradient attacks ran through BPDA surrogates (straight-through, median plus mean) and Square attacked "
            "every image still robust"
        )
    if zero_ce > threshold:
        out.append(
            f"{WARNING_PREFIX}: the cross-entropy input gradient is exactly zero for {zero_ce:.0%} of inputs "
            "(saturated softmax); CE-based attacks (FGSM, PGD, APGD-CE) under-report, trust the DLR and Square results"
        )
    if zero_margin > threshold:
        out.append(
            f"{WARNING_PREFIX}: the logit-margin input gradient is exactly zero for {zero_margin:.0%} of inputs "
            "(non-differentiable or quantised input); gradient attacks cannot see this model"
        )
    if unbounded > threshold:
        out.append(
            f"{WARNING_PREFIX}: a gradient attack with an unbounded budget (L-inf eps = 1) fails on {unbounded:.0%} "
            "of the inputs tested, where robust accuracy must be 0"
        )
    for norm, gain in blackbox.items():
        if gain > threshold:
            out.append(
                f"{WARNING_PREFIX}: the black-box Square attack broke {gain:.0%} of inputs ({norm}) that every "
                "gradient attack left standing; white-box results alone would overstate robustness"
            )
    if probabilities:
        out.append(
            f"{WARNING_PREFIX}: the model outputs probabilities, not logits; attacks use their logarithm, "
            "which saturates where probabilities round to 0 or 1"
        )
    if drift > 1e-4:
        out.append(
            f"{WARNING_PREFIX}: the model is not deterministic (logits differ by up to {drift:.3g} between two "
            "identical passes); use an expectation-over-transformation attack for randomised defences"
        )
    return out

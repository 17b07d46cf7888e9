"""Confidence scores of a classifier's outputs; higher always means "more in-distribution".

- ``msp``: maximum softmax probability (Hendrycks & Gimpel 2017). For ranking it is kept as
  log-MSP in float64, computed as ``-log1p(sum_{j != top} exp(z_j - z_top))`` (a monotone
  transform, so AUROC and thresholds are unchanged) because softmax saturates at exactly 1.0
  and would tie confident clean and fooling inputs.
- ``max_logit``: the largest logit (Hendrycks et al. 2022, "Scaling OOD detection").
- ``energy``: negative free energy ``T * logsumexp(logits / T)`` (Liu et al. 2020).
- ``neg_entropy``: ``sum_k p_k log p_k``, the negative predictive entropy.

Models whose outputs are already probabilities are scored from ``log p``: ``msp`` and
``neg_entropy`` are then exact, while ``max_logit`` (a monotone function of MSP) and
``energy`` (constant ``log sum p = 0``) carry no information and are not computed.
"""

from __future__ import annotations

import numpy as np
import torch

SCORES: tuple[str, ...] = ("msp", "max_logit", "energy", "neg_entropy")
PROBABILITY_SCORES: tuple[str, ...] = ("msp", "neg_entropy")
LABELS = {
    "msp": "max softmax probability",
    "max_logit": "max logit",
    "energy": "negative energy",
    "neg_entropy": "negative entropy",
}


def log_probabilities(outputs: torch.Tensor, outputs_probabilities: bool) -> torch.Tensor:
    """Log class probabilities from logits, or from probabilities (clamped away from 0)."""
    if outputs_probabilities:
        return outputs.clamp_min(torch.finfo(outputs.dtype).tiny).log()
    return outputs.log_softmax(dim=1)


def usable_scores(requested: list[str] | tuple[str, ...], outputs_probabilities: bool) -> tuple[list[str], list[str]]:
    """(scores to compute, scores dropped because the model outputs probabilities)."""
    if not outputs_probabilities:
        return list(requested), []
    keep = [s for s in requested if s in PROBABILITY_SCORES]
    return keep, [s for s in requested if s not in PROBABILITY_SCORES]


def confidence_scores(
    outputs: torch.Tensor,
    names: list[str] | tuple[str, ...] = SCORES,
    outputs_probabilities: bool = False,
    temperature: float = 1.0,
) -> dict[str, np.ndarray]:
    """Each requested score per input, float64; ``msp`` as log-MSP (see module docstring)."""
    names = list(names)
    bad = [s for s in names if s not in (PROBABILITY_SCORES if outputs_probabilities else SCORES)]
    if bad:
        raise ValueError(
            f"score(s) {bad} are not defined for {'probability' if outputs_probabilities else 'logit'} outputs"
        )
    out = outputs.detach().double().cpu()
    log_p = log_probabilities(out, outputs_probabilities)
    if outputs_probabilities:
        log_p = log_p - log_p.logsumexp(dim=1, keepdim=True)
    result: dict[str, np.ndarray] = {}
    for name in names:
        if name == "msp":
            value = _log_msp(log_p if outputs_probabilities else out)
        elif name == "max_logit":
            value = out.max(dim=1).values
        elif name == "energy":
            value = temperature * (out / temperature).logsumexp(dim=1)
        else:
            value = (log_p.exp() * log_p).sum(dim=1)
        result[name] = value.numpy()
    return result


def _log_msp(z: torch.Tensor) -> torch.Tensor:
    """log max softmax(z) as ``-log1p(sum of the other classes' exp(z_j - z_max))``, exact
    even when the top class holds all but 1e-20 of the probability mass."""
    top = z.argmax(dim=1, keepdim=True)
    others = (z - z.gather(1, top)).scatter(1, top, float("-inf"))
    return -torch.nn.functional.softplus(others.logsumexp(dim=1))


def display_values(name: str, values: np.ndarray | float) -> np.ndarray | float:
    """Scores in the unit users read: MSP as a probability, the others unchanged."""
    return np.exp(values) if name == "msp" else values

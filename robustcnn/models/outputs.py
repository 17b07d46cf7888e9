"""A model's outputs as log-probabilities or logits, whether it returns logits or probabilities
(``AuditedModel.outputs_probabilities``)."""

from __future__ import annotations

import torch


def log_of_probabilities(probabilities: torch.Tensor) -> torch.Tensor:
    """``log p``, with ``p`` clamped at the dtype's smallest normal number first: a probability that
    rounded to 0 gets a finite log (about -87 in float32, -708 in float64) instead of -inf, and
    every probability the dtype resolves keeps its own log and gradient."""
    return probabilities.clamp_min(torch.finfo(probabilities.dtype).tiny).log()


def log_probabilities(outputs: torch.Tensor, outputs_probabilities: bool) -> torch.Tensor:
    """Log class probabilities (N, classes): ``log_softmax`` of logits, or the clamped log of probabilities."""
    return log_of_probabilities(outputs) if outputs_probabilities else outputs.log_softmax(dim=1)


def as_logits(outputs: torch.Tensor, outputs_probabilities: bool) -> torch.Tensor:
    """Logits for losses and margins: logits unchanged, probabilities as their clamped log (a valid
    set of logits: its softmax is the probabilities back)."""
    return log_of_probabilities(outputs) if outputs_probabilities else outputs

"""Per-sample losses on logits used by the attacks: cross-entropy, margin and DLR."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def margin(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Logit of the true class minus the best other logit (or the ``target`` logit); negative
    means misclassified."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    if target is not None:
        return true - logits.gather(1, target[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf"))
    return true - others.amax(dim=1)


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def dlr(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Difference-of-logits-ratio loss (Croce & Hein 2020, eq. 6), to be maximised.

    ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)``: invariant to shifting and scaling the
    logits, so a saturated softmax cannot hide the gradient. It needs a third-largest logit;
    with fewer than 3 classes it falls back to the plain negative margin (Carlini & Wagner 2017).
    """
    if logits.shape[1] < 3:
        return -margin(logits, y)
    top = logits.topk(3, dim=1).values
    return -margin(logits, y) / (top[:, 0] - top[:, 2] + 1e-12)


def dlr_targeted(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Targeted DLR (Croce & Hein 2020, eq. 7): ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``.

    Below 4 classes it falls back to the targeted margin ``-(z_y - z_t)``.
    """
    if target is None:
        raise ValueError("the targeted DLR loss needs target classes")
    if logits.shape[1] < 4:
        return -margin(logits, y, target)
    top = logits.topk(4, dim=1).values
    return -margin(logits, y, target) / (top[:, 0] - (top[:, 2] + top[:, 3]) / 2 + 1e-12)


LOSSES = {"ce": cross_entropy, "dlr": dlr, "dlr-t": dlr_targeted}

"""Per-sample losses on logits used by the attacks: cross-entropy, margin and DLR."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Logit of the true class minus the best other logit; negative means misclassified."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf"))
    return true - others.amax(dim=1)


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def dlr(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference-of-logits-ratio loss (Croce & Hein 2020, eq. 6), to be maximised.

    ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)``: invariant to shifting and scaling the
    logits, so a saturated softmax cannot hide the gradient. It needs a third-largest logit;
    with fewer than 3 classes it falls back to the plain negative margin (Carlini & Wagner 2017).
    """
    if logits.shape[1] < 3:
        return -margin(logits, y)
    top = logits.topk(3, dim=1).values
    return -margin(logits, y) / (top[:, 0] - top[:, 2] + 1e-12)


LOSSES = {"ce": cross_entropy, "dlr": dlr}

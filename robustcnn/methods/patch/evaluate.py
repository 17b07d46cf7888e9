"""Evaluating patches on held-out images, and the two controls of Brown et al. (2017).

Controls share the adversarial patch's size, mask and placements, so any gap is the optimised
content's doing: uniform random noise, and a real image of the target class shrunk to the patch
(the paper's "real toaster").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...models import AuditedModel
from .geometry import Placements, apply_patch


@torch.no_grad()
def patched_predictions(
    model: AuditedModel,
    x: torch.Tensor,
    patch: torch.Tensor,
    mask: torch.Tensor,
    pl: Placements,
    target: int,
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted classes and target probabilities (on CPU) of ``x`` with ``patch`` pasted at ``pl``."""
    preds, target_probs = [], []
    device = model.device
    for i in range(0, len(x), batch_size):
        part = Placements(pl.side[i : i + batch_size], pl.angle[i : i + batch_size], pl.centre[i : i + batch_size]).to(
            device
        )
        out = model(apply_patch(x[i : i + batch_size].to(device), patch.to(device), mask.to(device), part)).float()
        probs = out if model.outputs_probabilities else out.softmax(dim=1)
        preds.append(probs.argmax(dim=1).cpu())
        target_probs.append(probs[:, target].cpu())
    return torch.cat(preds), torch.cat(target_probs)


def noise_patch(channels: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """A uniform random-noise patch (1, C, size, size)."""
    return torch.rand(1, channels, size, size, generator=gen)


@torch.no_grad()
def real_object_patch(
    model: AuditedModel, images: torch.Tensor, target: int, size: int, batch_size: int
) -> tuple[torch.Tensor, int]:
    """The image of the target class the model is most sure of, shrunk (antialiased) to the patch size,
    and its index in ``images``: the control gets the most convincing real object available."""
    logits = model.logits(images, batch_size)
    probs = logits if model.outputs_probabilities else logits.softmax(dim=1)
    best = int(probs[:, target].argmax())
    shrunk = F.interpolate(
        images[best : best + 1], size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return shrunk.clamp(0, 1), best

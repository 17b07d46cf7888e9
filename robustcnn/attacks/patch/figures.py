"""Report figures of the patch check: the patches themselves and patched held-out images."""
from __future__ import annotations

import torch

from ...models import AuditedModel
from ...reports.plots import image_grid
from .geometry import Placements, apply_patch

TITLES = {"patch": "adversarial", "noise": "noise control", "real": "real-object control"}


def patches_figure(patches: dict[str, torch.Tensor], mask: torch.Tensor, target: str, shape: str) -> bytes:
    """The adversarial patch and both controls, masked to their shape on a grey ground."""
    shown = torch.cat([p * mask + 0.5 * (1 - mask) for p in patches.values()])
    return image_grid(shown, [TITLES[k] for k in patches], ncols=len(patches), scale=2.0,
                      suptitle=f"{shape} patches for target '{target}'")


@torch.no_grad()
def examples_figure(
    model: AuditedModel, x: torch.Tensor, patch: torch.Tensor, mask: torch.Tensor, placements: dict[float, Placements],
    index: torch.Tensor, classes: list[str], target: int, batch_size: int,
) -> bytes:
    """Rows of the same held-out images with the adversarial patch at each area, titled with prediction and confidence."""
    images, titles = [], []
    for area, pl in placements.items():
        part = Placements(pl.side[index], pl.angle[index], pl.centre[index]).to(model.device)
        patched = apply_patch(x.to(model.device), patch.to(model.device), mask.to(model.device), part)
        out = model(patched).float()
        probs = out if model.outputs_probabilities else out.softmax(dim=1)
        conf, pred = probs.max(dim=1)
        images.append(patched.cpu())
        titles += [f"{area:.0%}: {classes[int(k)]} ({float(c):.2f})" for k, c in zip(pred, conf)]
    return image_grid(torch.cat(images), titles, ncols=len(x), suptitle=f"patched held-out images (target '{classes[target]}')")

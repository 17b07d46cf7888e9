"""Report figures of the patch check: the patches themselves and patched held-out images."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...models import AuditedModel
from ...results.plots import image_grid
from .geometry import Placements, apply_patch

TITLES = {"patch": "adversarial", "noise": "noise control", "real": "real-object control"}


def patches_figure(
    patches: dict[float, dict[str, torch.Tensor]], target: str, shape: str, per_area: bool = True
) -> bytes:
    """The adversarial patch and both controls of each area (a row each), masked to their shape on a grey ground
    and enlarged (nearest neighbour) to the largest patch's side, so no panel is mostly empty; the titles give
    each patch's area. A patch shared by all areas (``per_area`` false) is shown once."""
    shown, titles = [], []
    rows = patches if per_area else dict([next(iter(patches.items()))])
    for area, variants in rows.items():
        mask = variants["mask"]
        for k in TITLES:
            shown.append(variants[k] * mask + 0.5 * (1 - mask))
            titles.append(f"{TITLES[k]}, {area:.0%}" if per_area else TITLES[k])
    side = max(p.shape[-1] for p in shown)
    shown = [F.interpolate(p, size=(side, side), mode="nearest") for p in shown]
    return image_grid(
        torch.cat(shown), titles, ncols=len(TITLES), scale=2.0, suptitle=f"{shape} patches for target '{target}'"
    )


@torch.no_grad()
def examples_figure(
    model: AuditedModel,
    x: torch.Tensor,
    patches: dict[float, dict[str, torch.Tensor]],
    placements: dict[float, Placements],
    index: torch.Tensor,
    classes: list[str],
    target: int,
    batch_size: int,
) -> bytes:
    """Rows of the same held-out images with the adversarial patch at each area, titled with prediction and confidence."""
    images, titles = [], []
    for area, pl in placements.items():
        part = Placements(pl.side[index], pl.angle[index], pl.centre[index]).to(model.device)
        patch, mask = patches[area]["patch"], patches[area]["mask"]
        patched = apply_patch(x.to(model.device), patch.to(model.device), mask.to(model.device), part)
        out = model(patched).float()
        probs = out if model.outputs_probabilities else out.softmax(dim=1)
        conf, pred = probs.max(dim=1)
        images.append(patched.cpu())
        titles += [f"{area:.0%}: {classes[int(k)]} ({float(c):.2f})" for k, c in zip(pred, conf, strict=False)]
    return image_grid(
        torch.cat(images), titles, ncols=len(x), suptitle=f"patched held-out images (target '{classes[target]}')"
    )

"""Which class a patch aims at: a named class, an index, a list, all classes, or the hardest to reach.

"Hardest to reach" is measured, not guessed: a short pilot patch is trained for each candidate
class (the ``pilot_classes`` classes the model gives the least clean probability to other
classes' images) and the class whose pilot patch fools the fewest held-out training images wins.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import InvalidInputError
from ...models import AuditedModel
from .evaluate import patched_predictions
from .geometry import sample_placements
from .train import PatchTraining, train_patch

TargetSpec = str | int | list


def parse_targets(spec: TargetSpec, classes: list[str]) -> list[int] | None:
    """Class indices named by ``spec``; None for ``"hardest"``. Names win over indices ("3" is class "3")."""
    if isinstance(spec, str) and spec == "hardest":
        return None
    if isinstance(spec, str) and spec == "all":
        return list(range(len(classes)))
    items = spec if isinstance(spec, list) else [spec]
    if not items:
        raise InvalidInputError("patch target list is empty; name at least one class, or use 'hardest' or 'all'")
    indices = []
    for item in items:
        if isinstance(item, str) and item in classes:
            indices.append(classes.index(item))
        elif isinstance(item, int) and not isinstance(item, bool) and 0 <= item < len(classes):
            indices.append(item)
        else:
            shown = ", ".join(classes[:20]) + (", ..." if len(classes) > 20 else "")
            raise InvalidInputError(
                f"patch target {item!r} is not a class; use a class name ({shown}), an index below "
                f"{len(classes)}, 'hardest' or 'all'"
            )
    return list(dict.fromkeys(indices))


@dataclass
class PilotResult:
    target: int
    successes: int
    n: int
    mean_log_prob: float


def candidate_classes(
    model: AuditedModel, x: torch.Tensor, y: torch.Tensor, num_classes: int, k: int, batch_size: int
) -> tuple[list[int], torch.Tensor]:
    """The ``k`` classes with the lowest mean clean log-probability on other classes' images, and all means."""
    logits = model.logits(x, batch_size)
    logp = logits.clamp_min(1e-12).log() if model.outputs_probabilities else logits.log_softmax(dim=1)
    means = torch.stack(
        [logp[y != c, c].mean() if (y != c).any() else torch.tensor(float("inf")) for c in range(num_classes)]
    )
    present = [c for c in range(num_classes) if (y == c).any()]
    order = sorted(present, key=lambda c: float(means[c]))
    return order[:k], means


def hardest_target(
    model: AuditedModel,
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    setup: PatchTraining,
    k: int,
    images: int,
    gen: torch.Generator,
    batch_size: int,
) -> tuple[int, list[PilotResult]]:
    """Train a short pilot patch per candidate class on ``images`` training images and evaluate it
    on as many others at every configured area; the class with the fewest successes is the hardest."""
    candidates, means = candidate_classes(model, x, y, num_classes, k, batch_size)
    h, w = x.shape[-2:]
    results = []
    for target in candidates:
        pool = torch.nonzero(y != target).flatten()
        pool = pool[torch.randperm(len(pool), generator=gen)][: 2 * images]
        fit, held = x[pool[:images]], x[pool[images:]]
        patch = train_patch(model, fit, target, setup, gen)
        areas = torch.tensor(setup.areas).repeat_interleave(len(held))
        pl = sample_placements(areas, setup.shape, h, w, setup.max_rotation, gen)
        pred, _ = patched_predictions(
            model, held.repeat(len(setup.areas), 1, 1, 1), patch.patch, patch.mask, pl, target, batch_size
        )
        results.append(PilotResult(target, int((pred == target).sum()), len(pred), float(means[target])))
    hardest = min(results, key=lambda r: (r.successes, r.mean_log_prob))
    return hardest.target, results

"""Which class a patch aims at: a named class, an index, a list, all classes, the most vulnerable, or the hardest.

Both automatic rules are measured, not guessed: a short pilot patch is trained for each candidate
class and evaluated on held-out training images. ``"vulnerable"`` (the default: what can an attacker
make the model say?) keeps the ``top`` classes whose pilots fool the most images; ``"hardest"`` keeps
the one whose pilot fools the fewest. Candidates are the ``pilot_classes`` present classes the model
already gives the most (vulnerable) or least (hardest) clean probability on other classes' images:
every class when there are no more than that.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import InvalidInputError
from ...models import AuditedModel
from .evaluate import patched_predictions
from .geometry import sample_placements
from .train import PatchTraining, train_patch

TargetSpec = str | int | list[str | int]
AUTOMATIC = ("vulnerable", "hardest")


def parse_targets(spec: TargetSpec, classes: list[str]) -> list[int] | None:
    """Class indices named by ``spec``; None for an automatic rule (see ``AUTOMATIC``).
    Names win over indices and rules ("3" is class "3")."""
    if isinstance(spec, str) and spec in AUTOMATIC and spec not in classes:
        return None
    if isinstance(spec, str) and spec == "all":
        return list(range(len(classes)))
    items = spec if isinstance(spec, list) else [spec]
    if not items:
        raise InvalidInputError(
            "patch target list is empty; name at least one class, or use 'vulnerable', 'hardest' or 'all'"
        )
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
                f"{len(classes)}, 'vulnerable', 'hardest' or 'all'"
            )
    return list(dict.fromkeys(indices))


@dataclass
class PilotResult:
    target: int
    successes: int
    n: int
    mean_log_prob: float


def candidate_classes(
    model: AuditedModel,
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    k: int,
    batch_size: int,
    easiest: bool,
) -> tuple[list[int], torch.Tensor]:
    """The ``k`` present classes with the highest (``easiest``) or lowest mean clean log-probability on other
    classes' images, and all means. A class is a candidate only if the split has an image of another class."""
    logits = model.logits(x, batch_size)
    logp = logits.clamp_min(1e-12).log() if model.outputs_probabilities else logits.log_softmax(dim=1)
    means = torch.stack(
        [logp[y != c, c].mean() if (y != c).any() else torch.tensor(float("-inf")) for c in range(num_classes)]
    )
    present = [c for c in range(num_classes) if (y == c).any() and (y != c).any()]
    order = sorted(present, key=lambda c: float(means[c]), reverse=easiest)
    return order[:k], means


def pilot_split(pool: torch.Tensor, images: int) -> tuple[torch.Tensor, torch.Tensor]:
    """At most ``images`` to fit and as many others to evaluate; half each when fewer are available,
    and the single image for both when there is one (then the pilot is scored in-sample)."""
    fit = min(images, max(1, len(pool) // 2))
    held = pool[fit : fit + images]
    return pool[:fit], held if len(held) else pool[:fit]


def run_pilots(
    model: AuditedModel,
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    setup: PatchTraining,
    k: int,
    images: int,
    gen: torch.Generator,
    batch_size: int,
    easiest: bool,
) -> list[PilotResult]:
    """Train a short pilot patch per candidate class on up to ``images`` training images of other classes and
    evaluate it on up to as many others at every configured area."""
    candidates, means = candidate_classes(model, x, y, num_classes, k, batch_size, easiest)
    if not candidates:
        raise InvalidInputError(
            "the patch target cannot be chosen automatically: the training split needs images of at least two "
            "classes; name a target class instead"
        )
    h, w = x.shape[-2:]
    results = []
    for target in candidates:
        pool = torch.nonzero(y != target).flatten()
        fit_index, held_index = pilot_split(pool[torch.randperm(len(pool), generator=gen)], images)
        fit, held = x[fit_index], x[held_index]
        patch = train_patch(model, fit, target, setup, gen)
        areas = torch.tensor(setup.areas).repeat_interleave(len(held))
        pl = sample_placements(areas, setup.shape, h, w, setup.max_rotation, gen)
        pred, _ = patched_predictions(
            model, held.repeat(len(setup.areas), 1, 1, 1), patch.patch, patch.mask, pl, target, batch_size
        )
        results.append(PilotResult(target, int((pred == target).sum()), len(pred), float(means[target])))
    return results


def choose_targets(pilots: list[PilotResult], rule: str, top: int) -> list[int]:
    """The ``top`` classes whose pilots fooled the largest share (``"vulnerable"``), or the one with the smallest
    (``"hardest"``); ties go to the class the model gives more (vulnerable) or less (hardest) clean probability."""
    if rule == "hardest":
        return [min(pilots, key=lambda r: (r.successes / r.n, r.mean_log_prob)).target]
    ranked = sorted(pilots, key=lambda r: (r.successes / r.n, r.mean_log_prob), reverse=True)
    return [r.target for r in ranked[:top]]

"""The bad inputs a confidence threshold should reject, each compared with the clean set.

- ``gaussian-noise``: i.i.d. N(0.5, std^2) pixels clipped to [0, 1]; ``uniform-noise``: U(0, 1)
  pixels (Hendrycks & Gimpel 2017; the pure-noise inputs of Shafaei et al. 2018).
- ``fooling-gradient``, ``fooling-evolution``, ``adversarial``, ``corruptions``: the artifacts
  the checks of those names leave in ``ctx.artifacts``. When a check did not run, a small
  batch is generated here: signed-gradient ascent on a class's log-probability from uniform
  noise (Simonyan et al. 2014; Nguyen et al. 2015), L-inf APGD-CE keeping the successful
  examples (Croce & Hein 2020, ``methods.perturbation.apgd``), and the 15 ImageNet-C corruptions
  at severity 5 via ``robustcnn.methods.shifts.corrupt`` (Hendrycks & Dietterich 2019). There is
  no small stand-in for evolution, so ``fooling-evolution`` is measured only from its check's artifact.
- ``user:<name>``: a dataset given by the ``ood`` option, resized to the model's input.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ...artifacts import ADVERSARIAL_EXAMPLES, CORRUPTED_IMAGES, FOOLING_EVOLUTION_IMAGES, FOOLING_GRADIENT_IMAGES
from ...data import DatasetRef, Split, Target
from ...data.base import adapt_split
from ...data.index import BadImage
from ...errors import InvalidInputError
from ...models import AuditedModel
from ...models.outputs import log_probabilities
from ...seeding import SampleStreams
from ..perturbation.apgd import apgd
from ..perturbation.cascade import CountedView
from ..shifts import BENCHMARK, corrupt
from ..shifts.noise_corruptions import noise_images

if TYPE_CHECKING:
    from ...checks import AuditData, CheckContext
    from ...checks.audits.confidence import ConfidenceConfig

NOISE_SETS = ("gaussian-noise", "uniform-noise")
ARTIFACTS = {  # set name -> the artifact it is read from
    "fooling-gradient": FOOLING_GRADIENT_IMAGES,
    "fooling-evolution": FOOLING_EVOLUTION_IMAGES,
    "adversarial": ADVERSARIAL_EXAMPLES,
    "corruptions": CORRUPTED_IMAGES,
}
SET_NAMES = NOISE_SETS + tuple(ARTIFACTS)
FOOLING_CONFIDENCE = 0.9999


@dataclass
class OODSet:
    """One set of bad inputs and where it came from (shown in the rows' ``source`` column)."""

    name: str
    images: torch.Tensor
    source: str


def fooling_images(
    model: AuditedModel, n: int, shape: tuple[int, int, int], steps: int, step_size: float, gen: torch.Generator
) -> tuple[torch.Tensor, int]:
    """Unregularised fooling images: from uniform noise, signed-gradient ascent on
    ``log p(target)`` for targets cycling over the classes; an image stops once it reaches
    99.99% (Nguyen et al. 2015). Returns (images, number reaching 99.99%)."""
    x = noise_images("uniform", n, shape, 0.5, 0.0, gen).to(model.device)
    target = (torch.arange(n) % model.num_classes).to(model.device)
    done = torch.zeros(n, dtype=torch.bool, device=model.device)
    threshold = math.log(FOOLING_CONFIDENCE)
    for step in range(steps + 1):
        active = (~done).nonzero().flatten()
        if len(active) == 0:
            break
        xa = x[active].clone().requires_grad_(True)
        log_p = log_probabilities(model(xa), model.outputs_probabilities).gather(1, target[active, None]).squeeze(1)
        reached = log_p.detach() >= threshold
        done[active[reached]] = True
        if step == steps:
            break
        (grad,) = torch.autograd.grad(log_p.sum(), xa)
        x[active] = (xa.detach() + step_size * grad.sign()).clamp(0.0, 1.0)
    return x.detach().cpu(), int(done.sum())


def adversarial_examples(
    model: AuditedModel, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, gen: torch.Generator
) -> torch.Tensor:
    """Untargeted L-inf APGD with cross-entropy loss and a random start (Croce & Hein 2020), the
    adversarial check's implementation; returns only the examples that are misclassified. Each
    image's random start comes from its own stream, keyed from ``gen``, on any device."""
    x, y = x.to(model.device), y.to(model.device)
    keys = torch.randint(-(2**63), 2**63 - 1, (len(x),), generator=gen)
    view = CountedView(model, model.outputs_probabilities)
    run = apgd(view, x, y, eps, "linf", "ce", steps, SampleStreams(keys).to(model.device))
    return run.adversarial[run.success].detach().cpu()


def shifted_images(x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, str]:
    """The 15 ImageNet-C corruptions at severity 5, round-robin, from ``robustcnn.methods.shifts``.
    Returns (images, source)."""
    out = x.clone()
    for i, name in enumerate(BENCHMARK):
        if len(x[i :: len(BENCHMARK)]):
            out[i :: len(BENCHMARK)] = corrupt(x[i :: len(BENCHMARK)], name, 5, gen)
    return (
        out,
        f"generated: robustcnn.methods.shifts.corrupt, {len(BENCHMARK)} ImageNet-C corruptions at severity 5, round-robin",
    )


def subsample(images: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """At most ``k`` images, a seeded random subset if there are more."""
    if len(images) <= k:
        return images
    return images[torch.randperm(len(images), generator=gen)[:k]]


def load_user_set(
    spec: str, shape: tuple[int, int, int], notes: list[str], cap: int, generator: Callable[[str], torch.Generator]
) -> OODSet:
    """Dataset ``spec``'s evaluation images (labels ignored) at ``shape``: a seeded random ``cap`` of
    them when it has more (``generator(name)`` draws them), and only those are decoded, so a folder
    of any size costs ``cap`` images of memory. Unreadable files are left out with a note."""
    try:
        index = DatasetRef(spec).index()
    except InvalidInputError as exc:
        raise InvalidInputError(f"confidence: cannot use ood dataset '{spec}': {exc}") from exc
    name, total = f"user:{index.name}", len(index.test)
    source = f"user dataset {spec}"
    positions = torch.arange(total)
    if total > cap:
        positions = torch.randperm(total, generator=generator("subsample-" + name))[:cap]
        source += f"; random {cap} of {total}"
    converted: list[str] = []
    read = index.test.source.read(positions.tolist(), Target(shape[0], shape[1:]), converted)
    images = [r[0] for r in read.values() if not isinstance(r, BadImage)]
    if len(images) < len(read):
        notes.append(f"ood dataset '{spec}': {len(read) - len(images)} unreadable files left out")
    if not images:
        raise InvalidInputError(
            f"confidence: ood dataset '{spec}' has no readable images; give a dataset with at least one image"
        )
    notes.extend(f"ood dataset '{spec}': {text}" for text in dict.fromkeys(converted))
    return OODSet(name, torch.stack(images).float(), source)


def build_sets(
    model: AuditedModel, data: AuditData, cfg: ConfidenceConfig, ctx: CheckContext
) -> tuple[list[OODSet], list[str]]:
    """The OOD sets asked for in ``cfg``, with notes on what was generated, resized or skipped."""
    shape = data.eval.shape
    notes: list[str] = []
    sets: list[OODSet] = []

    def gen(name: str) -> torch.Generator:
        return ctx.generator("confidence", name)

    builders: dict[str, Callable[[], OODSet | None]] = {
        "gaussian-noise": lambda: OODSet(
            "gaussian-noise",
            noise_images("gaussian", cfg.noise_n, shape, 0.5, cfg.noise_std, gen("gaussian-noise")),
            f"generated: N(0.5, {cfg.noise_std}^2) clipped to [0, 1]",
        ),
        "uniform-noise": lambda: OODSet(
            "uniform-noise",
            noise_images("uniform", cfg.noise_n, shape, 0.5, 0.0, gen("uniform-noise")),
            "generated: U(0, 1)",
        ),
    }
    for name in cfg.sets:
        if name in builders:
            sets.append(builders[name]())
            continue
        key = ARTIFACTS[name]
        if key in ctx.artifacts and len(ctx.artifacts[key]):
            images = ctx.artifacts[key].detach().float().cpu()
            source = f"artifact {key.name}"
        elif cfg.generate_missing:
            generated = _generate(name, model, data, cfg, gen(name))
            if generated is None:
                notes.append(f"{name}: check did not run and no stand-in exists; set skipped")
                continue
            images, source = generated
        else:
            notes.append(f"{name}: artifact {key.name} missing and generate_missing is off; set skipped")
            continue
        if images.shape[1:] != torch.Size(shape):
            images = adapt_split_images(images, shape, name, notes)
        sets.append(OODSet(name, images, source))
    if cfg.ood:
        sets.append(load_user_set(cfg.ood, shape, notes, cfg.max_per_set, gen))
    out = []
    for s in sets:
        if len(s.images) == 0:
            notes.append(f"{s.name}: no images ({s.source}); set skipped")
            continue
        if len(s.images) > cfg.max_per_set:
            s.source += f"; random {cfg.max_per_set} of {len(s.images)}"
            s.images = subsample(s.images, cfg.max_per_set, gen("subsample-" + s.name))
        out.append(s)
    return out, notes


def adapt_split_images(images: torch.Tensor, shape: tuple[int, int, int], name: str, notes: list[str]) -> torch.Tensor:
    """Convert an artifact's images to the evaluation images' channels and size, with a note."""
    split = Split(images, torch.zeros(len(images), dtype=torch.long), [str(i) for i in range(len(images))])
    return adapt_split(split, shape[0], shape[1:], notes, name).x


def _generate(
    name: str, model: AuditedModel, data: AuditData, cfg: ConfidenceConfig, gen: torch.Generator
) -> tuple[torch.Tensor, str] | None:
    if name == "fooling-gradient":
        images, fooled = fooling_images(
            model, cfg.fooling_n, data.eval.shape, cfg.fooling_steps, cfg.fooling_step_size, gen
        )
        return images, (
            f"generated: signed-gradient ascent from uniform noise, {cfg.fooling_steps} steps of {cfg.fooling_step_size}; "
            f"{fooled}/{len(images)} reached 99.99%"
        )
    if name == "adversarial":
        pick = torch.randperm(len(data.eval), generator=gen)[: cfg.adversarial_n]
        images = adversarial_examples(
            model, data.eval.x[pick], data.eval.y[pick], cfg.adversarial_eps, cfg.adversarial_steps, gen
        )
        return images, (
            f"generated: L-inf APGD-CE eps={cfg.adversarial_eps}, {cfg.adversarial_steps} steps; "
            f"{len(images)}/{len(pick)} successful kept"
        )
    if name == "corruptions":
        pick = torch.randperm(len(data.eval), generator=gen)[: cfg.corruption_n]
        return shifted_images(data.eval.x[pick], gen)
    return None

"""The bad inputs a confidence threshold should reject, each compared with the clean set.

- ``gaussian-noise``: i.i.d. N(0.5, std^2) pixels clipped to [0, 1]; ``uniform-noise``: U(0, 1)
  pixels (Hendrycks & Gimpel 2017; the pure-noise inputs of Shafaei et al. 2018).
- ``fooling-gradient``, ``fooling-evolution``, ``adversarial``, ``corruptions``: the artifacts
  the checks of those names leave in ``ctx.artifacts``. When a check did not run, a small
  batch is generated here: signed-gradient ascent on a class's log-probability from uniform
  noise (Simonyan et al. 2014; Nguyen et al. 2015), L-inf PGD keeping the successful
  examples (Madry et al. 2018), and the 15 ImageNet-C corruptions at severity 5 via
  ``robustcnn.methods.shifts.corrupt`` (Hendrycks & Dietterich 2019), or, where that
  module is absent, severity-5-like Gaussian noise, blur and contrast. There is no small stand-in for evolution, so
  ``fooling-evolution`` is measured only from its check's artifact.
- ``user:<name>``: a dataset given by the ``ood`` option, resized to the model's input.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

from ...data import DatasetRef, Split, Target
from ...data.base import adapt_split
from ...data.index import BadImage
from ...errors import InvalidInputError
from ...models import AuditedModel
from .scores import log_probabilities

if TYPE_CHECKING:
    from ...checks import AuditData, CheckContext
    from ...checks.audits.confidence import ConfidenceConfig

NOISE_SETS = ("gaussian-noise", "uniform-noise")
ARTIFACTS = {
    "fooling-gradient": "fooling-gradient/images",
    "fooling-evolution": "fooling-evolution/images",
    "adversarial": "adversarial/examples",
    "corruptions": "corruptions/severity5",
}
SET_NAMES = NOISE_SETS + tuple(ARTIFACTS)
FOOLING_CONFIDENCE = 0.9999


@dataclass
class OODSet:
    """One set of bad inputs and where it came from (shown in the rows' ``source`` column)."""

    name: str
    images: torch.Tensor
    source: str


def gaussian_noise(
    n: int, shape: tuple[int, int, int], gen: torch.Generator, mean: float = 0.5, std: float = 0.25
) -> torch.Tensor:
    return (mean + std * torch.randn((n, *shape), generator=gen)).clamp(0.0, 1.0)


def uniform_noise(n: int, shape: tuple[int, int, int], gen: torch.Generator) -> torch.Tensor:
    return torch.rand((n, *shape), generator=gen)


def model_log_probs(model: AuditedModel, x: torch.Tensor) -> torch.Tensor:
    """Differentiable log-probabilities, whether the model returns logits or probabilities."""
    return log_probabilities(model(x), model.outputs_probabilities)


def fooling_images(
    model: AuditedModel, n: int, shape: tuple[int, int, int], steps: int, step_size: float, gen: torch.Generator
) -> tuple[torch.Tensor, int]:
    """Unregularised fooling images: from uniform noise, signed-gradient ascent on
    ``log p(target)`` for targets cycling over the classes; an image stops once it reaches
    99.99% (Nguyen et al. 2015). Returns (images, number reaching 99.99%)."""
    x = uniform_noise(n, shape, gen).to(model.device)
    target = (torch.arange(n) % model.num_classes).to(model.device)
    done = torch.zeros(n, dtype=torch.bool, device=model.device)
    threshold = math.log(FOOLING_CONFIDENCE)
    for step in range(steps + 1):
        active = (~done).nonzero().flatten()
        if len(active) == 0:
            break
        xa = x[active].clone().requires_grad_(True)
        log_p = model_log_probs(model, xa).gather(1, target[active, None]).squeeze(1)
        reached = log_p.detach() >= threshold
        done[active[reached]] = True
        if step == steps:
            break
        (grad,) = torch.autograd.grad(log_p.sum(), xa)
        x[active] = (xa.detach() + step_size * grad.sign()).clamp(0.0, 1.0)
    return x.detach().cpu(), int(done.sum())


def pgd_examples(
    model: AuditedModel, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, gen: torch.Generator
) -> torch.Tensor:
    """Untargeted L-inf PGD with a random start and step 2.5 eps / steps (Madry et al. 2018);
    returns only the examples that are misclassified."""
    x, y = x.to(model.device), y.to(model.device)
    start = (torch.rand(x.shape, generator=gen) * 2 - 1).to(model.device) * eps
    adv = (x + start).clamp(0.0, 1.0)
    alpha = 2.5 * eps / steps
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.nll_loss(model_log_probs(model, adv), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, adv)
        adv = adv.detach() + alpha * grad.sign()
        adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0.0, 1.0)
    with torch.no_grad():
        wrong = model_log_probs(model, adv).argmax(dim=1) != y
    return adv[wrong].detach().cpu()


def simple_corruptions(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Gaussian noise (sigma 0.38), Gaussian blur (sigma a tenth of the image side) and
    contrast cut to 5%, round-robin over the images (severity-5 levels of Hendrycks & Dietterich 2019)."""
    out = x.clone()
    noisy = out[0::3]
    out[0::3] = (noisy + 0.38 * torch.randn(noisy.shape, generator=gen)).clamp(0.0, 1.0)
    side = min(x.shape[-2:])
    sigma = max(side / 10.0, 0.5)
    kernel = min(2 * math.ceil(3 * sigma) + 1, 2 * side - 1)
    if len(out[1::3]):
        out[1::3] = TF.gaussian_blur(out[1::3], [kernel, kernel], [sigma, sigma])
    low = out[2::3]
    mean = low.mean(dim=(1, 2, 3), keepdim=True)
    out[2::3] = (mean + 0.05 * (low - mean)).clamp(0.0, 1.0)
    return out


def shifted_images(x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, str]:
    """The 15 ImageNet-C corruptions at severity 5, round-robin, from ``robustcnn.methods.shifts``
    when that module is installed; else :func:`simple_corruptions`. Returns (images, source)."""
    try:
        from ..shifts import BENCHMARK, corrupt
    except ImportError:
        return simple_corruptions(x, gen), "generated: Gaussian noise 0.38 / blur / contrast 5%, round-robin"
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
            gaussian_noise(cfg.noise_n, shape, gen("gaussian-noise"), 0.5, cfg.noise_std),
            f"generated: N(0.5, {cfg.noise_std}^2) clipped to [0, 1]",
        ),
        "uniform-noise": lambda: OODSet(
            "uniform-noise", uniform_noise(cfg.noise_n, shape, gen("uniform-noise")), "generated: U(0, 1)"
        ),
    }
    for name in cfg.sets:
        if name in builders:
            sets.append(builders[name]())
            continue
        key = ARTIFACTS[name]
        if key in ctx.artifacts and len(ctx.artifacts[key]):
            images = ctx.artifacts[key].detach().float().cpu()
            source = f"artifact {key}"
        elif cfg.generate_missing:
            generated = _generate(name, model, data, cfg, gen(name))
            if generated is None:
                notes.append(f"{name}: check did not run and no stand-in exists; set skipped")
                continue
            images, source = generated
        else:
            notes.append(f"{name}: artifact {key} missing and generate_missing is off; set skipped")
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
        images = pgd_examples(
            model, data.eval.x[pick], data.eval.y[pick], cfg.adversarial_eps, cfg.adversarial_steps, gen
        )
        return images, (
            f"generated: L-inf PGD eps={cfg.adversarial_eps}, {cfg.adversarial_steps} steps; "
            f"{len(images)}/{len(pick)} successful kept"
        )
    if name == "corruptions":
        pick = torch.randperm(len(data.eval), generator=gen)[: cfg.corruption_n]
        return shifted_images(data.eval.x[pick], gen)
    return None

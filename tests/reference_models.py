"""Two cheap MNIST-5k models that bracket the demo CNN's robustness, trained once into the cache.

``weak``: a linear softmax classifier (one dense layer), trained briefly. ``adversarial``: the demo CNN's
layout at width 8, trained with FGSM from a random start at L-inf 0.3 (Wong, Rice & Kolter 2020, "Fast is
better than free"; the step is 1.25 eps, as there). Used by a test and ``benchmarks/bench_adversarial.py``
to show that the adversarial and fooling headlines rank models of different robustness.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from robustcnn.models import AuditedModel
from robustcnn.models.zoo import MnistCNN, cache_dir

RECIPES = {
    "weak": {"arch": "linear", "epochs": 2, "lr": 1e-2, "adv_eps": 0.0, "seed": 0, "version": 1},
    "adversarial": {"arch": "cnn8", "epochs": 6, "lr": 3e-3, "adv_eps": 0.3, "seed": 0, "version": 1},
}


def build(arch: str) -> nn.Module:
    if arch == "linear":
        return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
    return MnistCNN(width=8)


def train(x: torch.Tensor, y: torch.Tensor, recipe: dict) -> nn.Module:
    """Adam on batches of 64; with ``adv_eps`` every batch is replaced by its FGSM-from-random-start version."""
    torch.manual_seed(recipe["seed"])
    net = build(recipe["arch"])
    opt = torch.optim.Adam(net.parameters(), lr=recipe["lr"])
    eps = recipe["adv_eps"]
    gen = torch.Generator().manual_seed(recipe["seed"])
    for _ in range(recipe["epochs"]):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 64):
            xb, yb = x[order[i : i + 64]], y[order[i : i + 64]]
            if eps:
                start = (xb + (torch.rand(xb.shape, generator=gen) * 2 - 1) * eps).clamp(0, 1).requires_grad_(True)
                (grad,) = torch.autograd.grad(F.cross_entropy(net(start), yb), start)
                xb = torch.min(torch.max(start + 1.25 * eps * grad.sign(), xb - eps), xb + eps).clamp(0, 1).detach()
            loss = F.cross_entropy(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def reference_model(name: str, x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    """The named reference model trained on (``x``, ``y``), cached by recipe under ``$ROBUSTCNN_CACHE/reference``."""
    recipe = RECIPES[name]
    key = "-".join(f"{k}{v}" for k, v in sorted(recipe.items()))
    path = Path(cache_dir()) / "reference" / f"{name}-{key}.pt"
    net = build(recipe["arch"])
    if path.exists():
        net.load_state_dict(torch.load(path, weights_only=True))
        return net.eval()
    net = train(x, y, recipe)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(net.state_dict(), tmp)
    os.replace(tmp, path)
    return net


def three_models(mnist, demo_model: AuditedModel, sample: torch.Tensor) -> dict[str, AuditedModel]:
    """``weak``, ``demo`` (the demo CNN) and ``adversarial``, wrapped for checks, least robust first."""
    from misleading_models import wrap

    return {
        "weak": wrap(reference_model("weak", mnist.train.x, mnist.train.y), sample=sample),
        "demo": demo_model,
        "adversarial": wrap(reference_model("adversarial", mnist.train.x, mnist.train.y), sample=sample),
    }

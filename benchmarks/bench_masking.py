"""Benchmark of the ``adversarial`` check on models that mask gradients, side by side with AutoAttack.

For every model of the masking zoo (tests/misleading_models.py: 3-bit quantised input, 8-bit
rounded input, JPEG in the loop, a 3x3 median filter, probabilities after a temperature of 1e-3,
plain probabilities, and logits scaled by 1e4) and the plain demo MNIST CNN, it prints L-inf
robust accuracy of our cascade (BPDA and the full Square stage on when masking is detected,
``bpda="auto"``, the default), of the same cascade with ``bpda="off"`` (the behaviour before
BPDA), and of AutoAttack "standard" (Croce & Hein 2020, torchattacks), on the same test images.

Targets (issue 20): ours <= AutoAttack + 0.005 at every epsilon on every model; on models
without masking, wall time within 1.5x of ``bpda="off"``.

Run: ``.venv/bin/python benchmarks/bench_masking.py [--n 200] [--eps 0.1 0.2 0.3] [--device cpu]``.
AutoAttack and the full Square stage cost up to 5,000 queries per image and epsilon on masked
models: on a shared 2-core CPU use ``--n 50`` or a subset of ``--models``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

import robustcnn  # noqa: F401  (first: it sets passive OpenMP waiting before torch starts)
from robustcnn.data import DatasetRef
from robustcnn.methods.perturbation import evaluate
from robustcnn.models import AuditedModel, ModelRef

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from misleading_models import ColdSoftmax, JpegInput, MedianFilter, QuantisedInput, SaturatedSoftmax, SoftmaxOutputs

ZOO = {
    "plain": lambda net: net,
    "logit-scaled x1e4": SaturatedSoftmax,
    "probabilities": SoftmaxOutputs,
    "quantised 3-bit": lambda net: QuantisedInput(net, 8),
    "rounded 8-bit": lambda net: QuantisedInput(net, 255),
    "jpeg q75": lambda net: JpegInput(net, 75),
    "median 3x3": lambda net: MedianFilter(net, 3),
    "cold softmax T=1e-3": ColdSoftmax,
}
UNMASKED = ("plain", "logit-scaled x1e4", "probabilities")


def timed(fn):
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def autoattack(model: AuditedModel, x: torch.Tensor, y: torch.Tensor, eps: list[float]) -> dict[float, float]:
    import torchattacks

    out = {}
    for e in eps:
        attack = torchattacks.AutoAttack(
            model, norm="Linf", eps=e, version="standard", n_classes=model.num_classes, seed=0
        )
        adv = attack(x, y)
        with torch.no_grad():
            out[e] = float((model(adv).argmax(1) == y).float().mean())
    return out


def ours(model: AuditedModel, x: torch.Tensor, y: torch.Tensor, eps: list[float], bpda: str):
    return evaluate(model, x, y, norms=["linf"], eps={"linf": [0.0, *eps]}, seed=0, batch_size=500, bpda=bpda)


def row(label: str, values: dict[float, float], eps: list[float]) -> str:
    return f"  {label:34s}" + " ".join(f"{values[e]:7.3f}" for e in eps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="test images")
    parser.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.2, 0.3])
    parser.add_argument("--models", nargs="+", default=list(ZOO), choices=list(ZOO), metavar="MODEL")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = DatasetRef("mnist5k").load()
    demo = ModelRef("demo:mnist-cnn").load(10, 1, (28, 28))
    x, y = data.test.x[: args.n].to(args.device), data.test.y[: args.n].to(args.device)
    print(f"{args.n} mnist5k test images, L-inf, device {args.device}; load average {os.getloadavg()[0]:.2f} at start")
    worst, ratios = -1.0, {}
    for name in args.models:
        model = AuditedModel(ZOO[name](demo.net), 10, 1, (28, 28), name=name).to(args.device)
        model.validate(x[:2])
        auto, t_auto = timed(lambda m=model: ours(m, x, y, args.eps, "auto"))
        off, t_off = timed(lambda m=model: ours(m, x, y, args.eps, "off"))
        aa, t_aa = timed(lambda m=model: autoattack(m, x, y, args.eps))
        mine = {e: auto.robust_accuracy("linf")[e] for e in args.eps}
        m = auto.masking
        print(
            f"\n== {name}: masking response: bpda={m.bpda}, ops={list(m.ops)}, zero margin gradient {m.zero_gradient:.0%}, "
            f"Square on every robust input={m.square_everywhere}"
        )
        print(f"  {'robust accuracy at L-inf eps':34s}" + " ".join(f"{e:7.3f}" for e in args.eps))
        print(row("ours (bpda auto)", mine, args.eps))
        print(row("ours (bpda off)", off.robust_accuracy("linf"), args.eps))
        print(row("AutoAttack standard", aa, args.eps))
        print(row("ours - AutoAttack (target <= 0.005)", {e: mine[e] - aa[e] for e in args.eps}, args.eps))
        found = {c.attack: c.improved for c in auto.norms["linf"].costs if c.improved}
        print(f"  inputs whose minimum each attack lowered: {found}")
        print(
            f"  wall time: ours auto {t_auto:.1f} s, ours off {t_off:.1f} s, AutoAttack {t_aa:.1f} s ({len(args.eps)} eps)"
        )
        worst = max(worst, *(mine[e] - aa[e] for e in args.eps))
        if name in UNMASKED:
            ratios[name] = t_auto / t_off
    print(f"\nworst ours - AutoAttack over models and eps: {worst:+.3f} (target <= +0.005)")
    for name, ratio in ratios.items():
        print(f"wall time bpda auto / off on {name}: {ratio:.2f}x (target <= 1.5x)")
    print(f"load average {os.getloadavg()[0]:.2f} at the end; timings share the machine, ratios come from one run")


if __name__ == "__main__":
    main()

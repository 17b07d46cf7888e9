"""Confidence thresholding on the demo MNIST CNN next to Hendrycks & Gimpel (2017).

Run: ``.venv/bin/python benchmarks/bench_confidence.py [--n 1000] [--noise 2000]``.

Reference numbers: Hendrycks & Gimpel, "A Baseline for Detecting Misclassified and
Out-of-Distribution Examples", ICLR 2017, MNIST rows (a 3-layer GELU MLP; their notebook
draws "Gaussian" noise as unclipped N(0, 1) pixels and uniform noise as U(0, 1)):
MSP AUROC 88.29 (Gaussian) and 97.89 (uniform); mean MSP 0.917 (Gaussian) and 0.881
(uniform). Nguyen et al. (2015) and Shafaei et al. (2018) predict that fooling images pass
a confidence threshold: we print the share accepted at the threshold keeping 95% of clean
inputs. Timings are wall-clock on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("ROBUSTCNN_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "robustcnn"))

import numpy as np
import pandas as pd
import torch

import robustcnn  # noqa: F401  (first: it sets passive OpenMP waiting before torch starts)
from robustcnn.checks import AuditData, CheckContext
from robustcnn.checks.audits.confidence import ConfidenceCheck
from robustcnn.data import DatasetRef, stratified_sample
from robustcnn.methods.confidence.metrics import detection
from robustcnn.methods.confidence.scores import SCORES, confidence_scores
from robustcnn.models import ModelRef

PAPER_AUROC = {"gaussian-noise": 88.29, "uniform-noise": 97.89}
PAPER_MEAN_MSP = {"gaussian-noise": 0.917, "uniform-noise": 0.881}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="clean test images (mnist5k has 1000)")
    parser.add_argument("--noise", type=int, default=2000, help="images per noise set")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)

    mnist = DatasetRef("mnist5k").load()
    model = ModelRef("demo:mnist-cnn").load(10, 1, (28, 28))
    model.validate(mnist.test.x[:2])
    data = AuditData(
        "mnist5k", mnist.classes, mnist.test.subset(stratified_sample(mnist.test.y, args.n, args.seed)), mnist.train
    )
    options = {
        "noise_n": args.noise,
        "max_per_set": args.noise,
        "fooling_n": 100,
        "adversarial_n": 300,
        "corruption_n": 500,
    }
    ctx = CheckContext(seed=args.seed)
    started = time.perf_counter()
    out = ConfidenceCheck.from_options(options).run(model, data, ctx)
    seconds = time.perf_counter() - started
    rows = pd.DataFrame(out.rows)

    print(
        f"demo:mnist-cnn on {args.n} mnist5k test images; check ran in {seconds:.1f} s "
        f"({model.counter.forward} images forward, {model.counter.backward} backward; shared machine)"
    )
    print("\nOOD sets:")
    for name, source in out.info["sets"].items():
        print(f"  {name:18s} {source}")

    auroc = rows[rows.metric == "auroc"].pivot(index="ood", columns="score", values="value")[list(SCORES)] * 100
    accepted = (
        rows[rows.metric == "accepted_share"].pivot(index="ood", columns="score", values="value")[list(SCORES)] * 100
    )
    print(
        "\nAUROC (%) per score and OOD set (clean = positive; 50 = no better than chance, <50 = bad inputs MORE confident):"
    )
    print(auroc.round(1).to_string())
    print("\nShare of bad inputs accepted (%) at the threshold keeping 95% of clean inputs:")
    print(accepted.round(1).to_string())

    # Hendrycks & Gimpel's own Gaussian noise: unclipped N(0, 1) pixels (outside the [0, 1] range we audit).
    clean = confidence_scores(model.logits(data.eval.x), ["msp"])["msp"]
    gen = torch.Generator().manual_seed(args.seed)
    hg = confidence_scores(model.logits(torch.randn((args.noise, 1, 28, 28), generator=gen)), ["msp"])["msp"]
    hg_auroc = detection(clean, hg).auroc * 100
    mean_msp = rows[(rows.metric == "mean_score") & (rows.score == "msp")].set_index("ood")["value"]

    print("\nNext to Hendrycks & Gimpel 2017 (MNIST, MSP):")
    table = []
    for name in ("gaussian-noise", "uniform-noise"):
        ours = auroc.loc[name, "msp"]
        table.append((f"AUROC {name}", PAPER_AUROC[name], ours, ours / PAPER_AUROC[name]))
        table.append((f"mean MSP {name}", PAPER_MEAN_MSP[name], mean_msp[name], mean_msp[name] / PAPER_MEAN_MSP[name]))
    table.append(
        (
            "AUROC N(0,1) unclipped (H&G's noise)",
            PAPER_AUROC["gaussian-noise"],
            hg_auroc,
            hg_auroc / PAPER_AUROC["gaussian-noise"],
        )
    )
    table.append(
        (
            "mean MSP N(0,1) unclipped",
            PAPER_MEAN_MSP["gaussian-noise"],
            float(np.mean(np.exp(hg))),
            float(np.mean(np.exp(hg))) / PAPER_MEAN_MSP["gaussian-noise"],
        )
    )
    print(pd.DataFrame(table, columns=["figure", "paper", "ours", "ours/paper"]).round(3).to_string(index=False))

    fool = rows[(rows.metric == "accepted_share") & (rows.score == "msp") & (rows.ood == "fooling-gradient")].iloc[0]
    print(
        f"\nFooling images accepted at the 95%-TPR MSP threshold: {fool['value']:.0%} "
        f"(95% CI {fool['ci_low']:.0%}-{fool['ci_high']:.0%}, n={fool['n']}); the seeds predict most of them."
    )
    worst = rows[rows.metric == "worst_accepted_share"].iloc[0]
    print(f"Headline: worst set {worst['ood']}, {worst['value']:.0%} accepted.")
    cal = rows[rows.metric.isin(["ece", "aurc", "excess_aurc", "misclassification_auroc"]) & (rows.score == "msp")]
    print(
        "\nCalibration on clean inputs (MSP): "
        + ", ".join(f"{m} {v:.4f}" for m, v in zip(cal.metric, cal.value, strict=False))
    )
    od = rows[(rows.metric == "od_accuracy") & (rows.score == "msp")].pivot(
        index="fit_on", columns="ood", values="value"
    )
    print(
        "\nOD-test (Shafaei et al. 2018), MSP: balanced detection accuracy, threshold fitted on row set, tested on column set:"
    )
    print((od * 100).round(1).to_string())
    if ctx.warnings:
        print("\nNotes: " + "; ".join(ctx.warnings))


if __name__ == "__main__":
    main()

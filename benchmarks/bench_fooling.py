"""Fooling images on the demo MNIST CNN next to Nguyen, Yosinski & Clune (2015).

Run: ``.venv/bin/python benchmarks/bench_fooling.py [--seeds 3] [--threads 2] [--extended 1000]``.

Paper figures (CVPR 2015, sec. 3.1 and 3.2, LeNet trained on MNIST with Caffe): direct-encoding
MAP-Elites "in less than 50 generations" produces images of every digit classified with
>= 99.99% confidence; CPPN-encoded runs likewise reach >= 99.99% for every digit; the paper's
Sferes code took about 5 minutes for 200 generations on 4 cores. Gradient ascent
(Simonyan-style, sec. 3.3) reaches >= 99.99% for every class. Targets for this repository:
direct >= 99.99% for all 10 classes in < 50 generations of population 200 and < 10 s on 2 cores;
CPPN >= 99% for all classes; gradient >= 99.99% for all classes within 300 steps.

The 50-generation direct run is made on two models: the demo CNN (ReLU after each convolution,
trained with random 2-pixel shifts) and ``demo:mnist-lenet``, Caffe's LeNet layout trained without
augmentation, which is the paper's model. The paper's figure is reproduced on the LeNet; the demo
CNN resists pixel-wise evolution far longer (see the extended run), while gradient ascent and the
CPPN still fool it.

``--extended`` reruns direct evolution with that many generations (early stop at 0.99999) to
show where each class crosses the thresholds. Timings are wall-clock on a machine shared with
other jobs: they are inflated by their load.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("ROBUSTCNN_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "robustcnn"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import robustcnn  # noqa: F401,E402  (first: it sets passive OpenMP waiting before torch starts)
import torch  # noqa: E402

from robustcnn.attacks.evolution.cppn import CPPNEncoding  # noqa: E402
from robustcnn.attacks.evolution.direct import DirectEncoding  # noqa: E402
from robustcnn.attacks.evolution.map_elites import map_elites  # noqa: E402
from robustcnn.attacks.fooling import FoolingGradientCheck, Trace, gradient_fooling, log_probabilities  # noqa: E402
from robustcnn.attacks.noise import NoiseCheck  # noqa: E402
from robustcnn.checks import AuditData, CheckContext  # noqa: E402
from robustcnn.data import DatasetRef  # noqa: E402
from robustcnn.models import ModelRef  # noqa: E402

THRESHOLDS = [0.99, 0.999, 0.9999]
PAPER_DIRECT = "all 10 at >= 99.99% in < 50 gens; ~5 min / 200 gens on 4 cores"
SHAPE = (1, 28, 28)
CLASSES = list(range(10))


def per_class(trace: Trace) -> pd.DataFrame:
    """Best confidence and the step/generation at which each threshold was first met (-1: never)."""
    df = pd.DataFrame({"best": trace.best.numpy()}, index=pd.Index(CLASSES, name="class"))
    for j, thr in enumerate(THRESHOLDS):
        df[f"at {thr}"] = trace.step_at[:, j].numpy()
    return df


def show(df: pd.DataFrame) -> str:
    out = df.copy()
    out["best"] = out["best"].map(lambda p: f"{p:.6f}")
    for col in out.columns[1:]:
        out[col] = out[col].map(lambda g: "never" if g < 0 else str(int(g)))
    return out.T.to_string()


def evolve(model, encoding: str, seed: int, generations: int, stop_at: float) -> tuple[Trace, int, int, float]:
    gen = torch.Generator().manual_seed(seed)
    enc = DirectEncoding(SHAPE, 0.1, 1000, 15.0, gen) if encoding == "direct" else CPPNEncoding(SHAPE, 15.0, gen)

    def scores(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return log_probabilities(model(x), False)

    start = time.perf_counter()
    trace, gens, evals = map_elites(enc, scores, CLASSES, SHAPE, 200, generations, THRESHOLDS, stop_at, gen)
    return trace, gens, evals, time.perf_counter() - start


def summary_line(
    name: str, df: pd.DataFrame, budget: int, target: float, paper: str, seconds: float, evals: int
) -> dict:
    col = f"at {target}"
    reached = (df[col] >= 0) & (df[col] < budget)
    return {
        "method": name,
        "target": f">= {target:.2%} all classes within {budget}",
        "classes reaching": f"{int(reached.sum())}/10",
        "worst class": f"{df['best'].min():.6f}",
        "max gens/steps": int(df[col].max()) if (df[col] >= 0).all() else "never",
        "model evals": evals,
        "seconds": round(seconds, 1),
        "paper": paper,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--extended", type=int, default=1000, help="direct-evolution generations for the extended run (0: skip)"
    )
    parser.add_argument("--cppn-generations", type=int, default=100)
    parser.add_argument(
        "--paper-models",
        nargs="+",
        default=["demo:mnist-cnn", "demo:mnist-lenet"],
        help="models for the 50-generation direct-encoding run",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = DatasetRef("mnist5k").load()
    model = ModelRef("demo:mnist-cnn").load(10, 1, (28, 28))
    model.validate(data.test.x[:2])
    audit = AuditData("mnist5k", data.classes, data.test, data.train)
    print(f"torch threads: {args.threads}; timings on a shared machine are inflated by other load\n")

    rows = []
    for seed in range(args.seeds):
        for name in args.paper_models:
            paper_model = ModelRef(name).load(10, 1, (28, 28))
            trace, gens, evals, secs = evolve(paper_model, "direct", seed, 49, 1.0)
            df = per_class(trace)
            print(
                f"direct encoding on {name}, seed {seed}: 50 generations (0-49) of 200, {evals} evaluations, {secs:.1f} s\n{show(df)}\n"
            )
            rows.append(summary_line(f"direct, {name} (seed {seed})", df, 50, 0.9999, PAPER_DIRECT, secs, evals))
        if args.extended:
            trace, gens, evals, secs = evolve(model, "direct", seed, args.extended, 0.99999)
            df = per_class(trace)
            print(
                f"direct encoding on demo:mnist-cnn, seed {seed}, extended: stopped after generation {gens}, {evals} evaluations, {secs:.1f} s\n{show(df)}\n"
            )
            rows.append(
                summary_line(
                    f"direct extended, demo:mnist-cnn (seed {seed})", df, args.extended + 1, 0.9999, "-", secs, evals
                )
            )
        trace, gens, evals, secs = evolve(model, "cppn", seed, args.cppn_generations, 0.99999)
        df = per_class(trace)
        print(
            f"CPPN encoding, seed {seed}: stopped after generation {gens}, {evals} evaluations, {secs:.1f} s\n{show(df)}\n"
        )
        rows.append(
            summary_line(f"CPPN (seed {seed})", df, args.cppn_generations + 1, 0.99, "all 10 at >= 99.99%", secs, evals)
        )

        check = FoolingGradientCheck()
        start = time.perf_counter()
        trace = gradient_fooling(
            model, CLASSES, SHAPE, check.variant("fooling"), THRESHOLDS, 0.99999, torch.Generator().manual_seed(seed)
        )
        secs = time.perf_counter() - start
        df = per_class(trace)
        evals = int(trace.evals_at[:, -1].clamp_min(0).sum())
        print(f"gradient ascent, seed {seed}: {secs:.1f} s\n{show(df)}\n")
        rows.append(summary_line(f"gradient (seed {seed})", df, 301, 0.9999, "all classes at >= 99.99%", secs, evals))

    noise = NoiseCheck.from_options({"n": 2000}).run(model, audit, CheckContext(seed=0))
    noise_df = pd.DataFrame(noise.rows)
    keep = noise_df[noise_df.metric.isin(["top_class_share", "mean_top_probability", "share_above"])]
    print("pure noise (Shafaei et al. 2018 arbitrary-predictions test), 2000 images per kind:")
    print(keep[["ood", "metric", "class", "threshold", "value"]].to_string(index=False, na_rep=""), "\n")

    table = pd.DataFrame(rows)
    print("summary (ours next to the paper):")
    print(table.to_string(index=False))
    direct = table[table.method.str.startswith("direct, ")]
    if len(direct):
        print(
            f"\ndirect 50-generation wall time vs the paper's ~75 s per 50 generations (5 min / 200 on 4 cores): "
            f"ratio {np.mean(direct.seconds) / 75:.2f}"
        )


if __name__ == "__main__":
    main()

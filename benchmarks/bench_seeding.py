"""Cost of per-sample random streams: every corruption on one batch, drawing from one torch
generator for the batch versus one ``SampleStreams`` stream per image, and the raw draws.

    .venv/bin/python benchmarks/bench_seeding.py [--batch 256] [--size 32] [--channels 3] [--threads 1]

Each figure is the fastest of 5 rounds; the ratio is streams / generator.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import robustcnn  # noqa: F401, I001  (first: it sets passive OpenMP waiting before torch starts)
import torch
from robustcnn.methods.shifts.corruptions import CORRUPTIONS, corrupt
from robustcnn.seeding import SampleStreams


def fastest(fn, rounds: int = 5) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.rand(args.batch, args.channels, args.size, args.size, generator=torch.Generator().manual_seed(0))
    ids = [str(i) for i in range(args.batch)]
    shape = tuple(x.shape[1:])
    print(f"batch {args.batch} x {shape}, {args.threads} thread(s); ms, fastest of 5")
    print(f"{'draw / corruption':<20} {'generator':>10} {'streams':>10} {'ratio':>7}")
    total = [0.0, 0.0]
    gen = torch.Generator().manual_seed(0)
    streams = SampleStreams.for_ids(0, ids)
    for name, a, b in (
        ("uniform", lambda: torch.rand(x.shape, generator=gen), lambda: streams.uniform(shape)),
        ("normal", lambda: torch.randn(x.shape, generator=gen), lambda: streams.normal(shape)),
    ):
        ta, tb = fastest(a), fastest(b)
        print(f"{name:<20} {ta:>10.2f} {tb:>10.2f} {tb / ta:>7.2f}")
    for name in CORRUPTIONS:
        ta = fastest(lambda name=name: corrupt(x, name, 3, torch.Generator().manual_seed(0)))
        tb = fastest(lambda name=name: corrupt(x, name, 3, SampleStreams.for_ids(0, ids, name)))
        total[0] += ta
        total[1] += tb
        print(f"{name:<20} {ta:>10.2f} {tb:>10.2f} {tb / ta:>7.2f}")
    print(f"{'all 19':<20} {total[0]:>10.2f} {total[1]:>10.2f} {total[1] / total[0]:>7.2f}")


if __name__ == "__main__":
    main()

"""Executors side by side: the same many-model audit run locally, in a process pool and on Ray.

Prints, per executor, the seconds to start it (a local Ray runtime) and those of the audit (and
their ratio to local), the 1-minute load average when it ended, whether results.csv is
byte-identical to local's, the task counts and per-task costs, and an on-paper projection to 20 ResNet-50 models x 10,000 images on 8 GPUs: the measured passes per image of
this plan, times ResNet-50 throughput measured on one H200 (fp32, batch 256; pass your own with
--gpu-forward / --gpu-forward-backward). Ignores data loading and driver overhead.

    python benchmarks/bench_executors.py                      # 4 models x default checks, n=200
    python benchmarks/bench_executors.py --n 100 --plan benchmarks/executors_plan.toml   # lighter: 3 checks

The 4 models are the demo CNN trained with 4 seeds (1 epoch each, cached in --work).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import torch

from robustcnn.executors import make_engine
from robustcnn.executors.base import available_cores
from robustcnn.models import ModelRef
from robustcnn.plan import load_plan
from robustcnn.runner import run_plan


def seeded_models(work: Path, seeds: list[int]) -> list[ModelRef]:
    """The demo CNN trained for one epoch with each seed (state_dicts, cached)."""
    from robustcnn.data import DatasetRef
    from robustcnn.models import zoo

    data = None
    refs = []
    for seed in seeds:
        path = work / f"mnist-cnn-seed{seed}.pt"
        if not path.exists():
            data = data or DatasetRef("mnist5k").load()
            blob = zoo.train_model("mnist-cnn", data, 1, 64, 1e-3, 0, seed, log=lambda m: None)
            torch.save(blob["state_dict"], path)
        refs.append(ModelRef(spec=str(path), arch="demo:mnist-cnn", name=f"seed{seed}"))
    return refs


def tables(root: Path, names: list[str]) -> dict[str, bytes]:
    """results.csv of each model, byte for byte."""
    return {name: (root / name / "results.csv").read_bytes() for name in names}


def run(plan, out: Path, name: str, workers: int) -> tuple[float, float, float]:
    """Seconds to start the engine (a local Ray runtime: its processes; a pool spawns its workers
    at the first task, so that is in the audit's time), seconds of the audit itself, and the
    machine's 1-minute load average at its end (other work on a shared machine skews the ratios)."""
    shutil.rmtree(out, ignore_errors=True)
    plan = plan.with_overrides(out=str(out))
    started = time.perf_counter()
    engine = make_engine(name, workers=workers)
    ready = time.perf_counter()
    try:
        run_plan(plan, engine=engine)
    finally:
        engine.close()
    return ready - started, time.perf_counter() - ready, os.getloadavg()[0]


def costs(root: Path, names: list[str]) -> tuple[int, float, int, int]:
    """Tasks (shards and whole checks; summaries aside), seconds, images forward and backward over
    every model, from meta.json."""
    tasks = seconds = forward = backward = 0
    for name in names:
        for check in json.loads((root / name / "meta.json").read_text())["checks"].values():
            tasks += check["tasks"]
            seconds += check["seconds"]
            forward += check["forward"]
            backward += check["backward"]
    return tasks, seconds, forward, backward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--checks", default=None, help="comma-separated checks (default: the demo plan's)")
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--plan", default=None, help="plan file for checks and options (default: audits/demo.toml)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--executors", default="local,processes,ray")
    parser.add_argument("--work", default="bench-executors")
    parser.add_argument(
        "--gpu-forward",
        type=float,
        default=7456,
        help="ResNet-50 forward images/s on one GPU (default: measured on an H200, fp32, batch 256)",
    )
    parser.add_argument(
        "--gpu-forward-backward",
        type=float,
        default=2089,
        help="ResNet-50 forward+backward (input gradient) images/s on one GPU (H200, fp32, batch 256)",
    )
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(exist_ok=True)
    models = seeded_models(work, [int(s) for s in args.seeds.split(",")])
    plan = load_plan(args.plan or Path(__file__).resolve().parents[1] / "audits" / "demo.toml")
    checks = args.checks.split(",") if args.checks else plan.checks
    plan = plan.with_overrides(
        models=models, n=args.n, checks=checks, gates=[], options={k: v for k, v in plan.options.items() if k in checks}
    )
    names = [m.display_name() for m in models]
    print(f"{len(models)} models x checks {','.join(checks)}, n={args.n}, torch threads {torch.get_num_threads()}")
    results = {}
    for name in args.executors.split(","):
        start, seconds, load = run(plan, work / name, name, args.workers)
        results[name] = (start, seconds, tables(work / name, names), load)
    local_seconds, local_tables = next(((s, t) for n, (_, s, t, _) in results.items() if n == "local"), (None, None))
    local_seconds = local_seconds or next(iter(results.values()))[1]
    local_tables = local_tables or next(iter(results.values()))[2]
    threads = max(1, available_cores() // args.workers)
    print(
        f"\n{'executor':<10} {'start s':>8} {'audit s':>8} {'x local':>8} {'with start':>10} {'load':>5}  results.csv"
    )
    for name, (start, seconds, found, load) in results.items():
        same = "identical" if found == local_tables else "DIFFER"
        print(
            f"{name:<10} {start:8.1f} {seconds:8.1f} {seconds / local_seconds:8.2f} "
            f"{(start + seconds) / local_seconds:10.2f} {load:5.1f}  {same}"
        )
    print(
        f"(local: one process, {torch.get_num_threads()} torch threads; processes and Ray: {args.workers} workers "
        f"of {threads} thread(s))"
    )

    tasks, task_seconds, forward, backward = costs(work / next(iter(results)), names)
    print(
        f"\ntasks: {tasks} ({tasks // len(models)} per model, summaries aside); "
        f"task time {task_seconds:.1f} s, {task_seconds / tasks:.2f} s per task"
    )
    print(f"passes: {forward} images forward, {backward} backward ({(forward + backward) / len(models):.0f} per model)")
    pass_seconds = task_seconds / max(1, forward + 2 * backward)
    print(
        f"measured cost: {pass_seconds * 1e3:.3f} ms per image-forward-equivalent (backward = 2 forwards), demo CNN on CPU"
    )

    # projection: 20 ResNet-50 x 10,000 images on 8 GPUs
    scale = 10_000 / args.n
    passes = 20 * (forward + backward) / len(models) * scale
    # a backward pass follows a forward one, which the forward count holds already
    gpu_seconds = (
        (forward / args.gpu_forward + backward * (1 / args.gpu_forward_backward - 1 / args.gpu_forward))
        * 20
        / len(models)
        * scale
        / 8
    )
    basis = (
        f"{args.gpu_forward:.0f} forward and {args.gpu_forward_backward:.0f} forward+backward ResNet-50 "
        "images/s per GPU"
    )
    print(
        f"\nprojection, 20 ResNet-50 x 10,000 images, 8 GPUs, same checks: "
        f"{passes:.3g} image passes forward or backward ({passes / 20:.3g} per model, {scale:.0f}x the measured "
        "sample); "
        f"{gpu_seconds / 3600:.2f} h wall at {basis}; about {20 * round(tasks / len(models) * scale)} tasks "
        "(shards of the same size)"
    )


if __name__ == "__main__":
    main()

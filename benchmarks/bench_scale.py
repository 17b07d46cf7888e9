"""Real-scale data: an audit of a folder of photos against the figures of the real-scale issue.

Run: ``.venv/bin/python benchmarks/bench_scale.py [--files 3000] [--tiny 50000] [--workers 2] [--device cuda]
[--profile quick]``

Generated under ``/tmp/robustcnn-bench-scale`` (kept between runs): an ImageFolder of 3,000
500x375 JPEGs in 10 classes (smooth random scenes, about 40-60 kB each), a folder of 50,000
tiny PNGs, and an untrained torchvision resnet18 state_dict (10 classes).

1. ``robustcnn audit --arch torchvision:resnet18 --input-size 224x224 --checks clean --n 50`` in a
   child process: wall seconds and peak RSS (``ru_maxrss`` of the child); targets 30 s and 1.5 GB
   on 2 cores. Once as the issue ran it (images stretched to 224x224) and once with torchvision's
   evaluation policy (``--resize 256 --center-crop 224``), and with that at ``--batch-size 32``.
   About 0.85 GB of the peak is importing torch (with its CUDA libraries) and robustcnn; most of
   the rest is the model and its calls at the fitted batch size (24 at 224x224: what fits 512 MiB
   of saved activations), which ``--batch-size`` sets instead.
2. Indexing the 50,000 tiny files (``DatasetRef.index()``, no image opened); target 5 s.
3. The same audit (``--resize 256 --center-crop 224 --batch-size 25``) with untrained
   state_dicts of torchvision's resnet50, mobilenet_v3_large, efficientnet_b0, convnext_tiny and
   timm's resnet50: each must run end to end (``--skip-models`` leaves this out).
4. Decode throughput to 224x224 (resize 256, centre crop 224) of the same 600 JPEGs: robustcnn's
   threaded decoder versus a plain ``torch.utils.data.DataLoader`` with PIL and torchvision's
   transforms, the same number of workers; target ratio >= 0.8.
5. Estimate versus actual (``--estimate-checks``): an audit of the photos with those checks
   (resnet18, ``--estimate-size``, ``--estimate-n`` images); per check, the passes and seconds the
   plan estimated before the run (model time and other work) next to those meta.json measured,
   and their ratio, and what calibrating and probing cost. Then the plan of ``--estimate-profile``
   (default ``standard``) at 224x224, n = 200, on ``--device``: what that profile would cost there.
6. A profile (``--profile quick``): an audit with ``--checks PROFILE`` (resnet18, ``--profile-size``,
   ``--profile-n`` images; defaults 224x224 and 100) of a second folder of the same kind of photos,
   ``ROOT/train`` and ``ROOT/test`` (``--split-files``, default 1,000 and 500) with a ``metadata.csv``
   group attribute, so every family runs (``patch``, ``dataset-bias`` and ``label-issues`` need the
   training split, ``groups`` the attribute). Per check: seconds, forward and backward passes from
   meta.json, share of the summed check seconds, the estimate before the run; the dominant check;
   the run's wall time against the target (``--profile-minutes``, 15) and the load average.

``--baseline-repo DIR`` runs the audits of 1 also with the robustcnn source tree in DIR (for example
a checkout from before a change) and prints both side by side.

Timings are wall-clock seconds on this machine and include other load on it; the page cache
is warm after the first pass over the files (both decoders see the same warm cache).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path("/tmp/robustcnn-bench-scale")
DEVICE = "cpu"  # --device
PHOTO_ARCHS = [
    "torchvision:resnet50",
    "torchvision:mobilenet_v3_large",
    "torchvision:efficientnet_b0",
    "torchvision:convnext_tiny",
    "timm:resnet50",
]
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _photo(args: tuple[Path, int] | tuple[Path, int, float]) -> int:
    """One smooth random 500x375 scene saved as JPEG (quality 90), its pixels scaled by an optional brightness."""
    from PIL import Image, ImageFilter

    path, seed, brightness = (*args, 1.0)[:3]
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((500, 375), Image.BICUBIC)
    noise = rng.normal(0, 12, (375, 500, 3))
    arr = np.clip((np.asarray(img, dtype=np.float64) + noise) * brightness, 0, 255).astype(np.uint8)
    Image.fromarray(arr).filter(ImageFilter.GaussianBlur(0.7)).save(path, quality=90)
    return path.stat().st_size


def make_photos(count: int, workers: int) -> Path:
    folder = ROOT / f"photos-{count}"
    done = folder / ".complete"
    if done.exists():
        return folder
    jobs = []
    for i in range(count):
        cls = folder / f"class{i % 10}"
        cls.mkdir(parents=True, exist_ok=True)
        jobs.append((cls / f"img{i:05d}.jpg", i))
    with ProcessPoolExecutor(workers) as pool:
        total = sum(pool.map(_photo, jobs, chunksize=50))
    done.write_text(str(total))
    return folder


def make_split_photos(train: int, test: int, workers: int) -> Path:
    """The same kind of photos as ``make_photos`` as ``ROOT/train/<class>`` and ``ROOT/test/<class>``, with a
    ``metadata.csv`` group attribute ``light`` (``bright`` or ``dim``: pixels scaled by 0.6), drawn per image at
    random, so every check, ``patch``, ``dataset-bias``, ``label-issues`` and ``groups`` included, can run."""
    folder = ROOT / f"photos-split-{train}-{test}"
    done = folder / ".complete"
    if done.exists():
        return folder
    rng = np.random.default_rng(1)
    jobs, rows = [], ["path,light"]
    for split, count, offset in (("train", train, 10**6), ("test", test, 2 * 10**6)):
        for i in range(count):
            cls = folder / split / f"class{i % 10}"
            cls.mkdir(parents=True, exist_ok=True)
            light = "dim" if rng.random() < 0.5 else "bright"
            path = cls / f"img{i:05d}.jpg"
            jobs.append((path, offset + i, 0.6 if light == "dim" else 1.0))
            rows.append(f"{path.relative_to(folder).as_posix()},{light}")
    with ProcessPoolExecutor(workers) as pool:
        total = sum(pool.map(_photo, jobs, chunksize=50))
    (folder / "metadata.csv").write_text("\n".join(rows) + "\n")
    done.write_text(str(total))
    return folder


def make_tiny(count: int) -> Path:
    from PIL import Image

    folder = ROOT / f"tiny-{count}"
    done = folder / ".complete"
    if done.exists():
        return folder
    png = folder / "one.png"
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("L", (4, 4), 7).save(png)
    data = png.read_bytes()
    png.unlink()
    for i in range(count):
        cls = folder / f"c{i % 10}"
        cls.mkdir(exist_ok=True)
        (cls / f"{i:06d}.png").write_bytes(data)
    done.write_text("ok")
    return folder


def make_model(arch: str = "torchvision:resnet18") -> Path:
    """An untrained state_dict of ``arch`` for 10 classes, built as robustcnn builds it."""
    import torch

    from robustcnn.models import build_architecture

    path = ROOT / f"{arch.replace(':', '-')}_state.pt"
    if not path.exists():
        torch.manual_seed(0)
        torch.save(build_architecture(arch, num_classes=10, in_channels=3).state_dict(), path)
    return path


def measured(argv: list[str], source: Path = REPO) -> tuple[float, float, int, str]:
    """Run ``argv`` in a child with robustcnn from ``source``; wall seconds, peak RSS (GB, 10^9 bytes)
    of that child, exit code, last stderr line."""
    probe = (
        "import resource, subprocess, sys, time, json\n"
        "t = time.perf_counter(); p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(json.dumps([time.perf_counter() - t, rss, p.returncode, (p.stderr.strip().splitlines() or [''])[-1]]))\n"
    )
    inherited = os.environ.get("PYTHONPATH")  # e.g. the wheels gpu_check.sh installs beside the repo
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(source), *([inherited] if inherited else [])])}
    out = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, check=True, env=env)
    wall, rss_kb, code, err = json.loads(out.stdout)
    return wall, rss_kb * 1024 / 1e9, code, err


def audit(
    photos: Path,
    model: Path,
    out: Path,
    extra: list[str],
    arch: str = "torchvision:resnet18",
    source: Path = REPO,
    checks: str = "clean",
    n: int = 50,
    size: str = "224x224",
) -> tuple[float, float, int, str]:
    cli = [sys.executable, "-m", "robustcnn"]
    return measured(
        [
            *cli,
            "audit",
            "--model",
            str(model),
            "--arch",
            arch,
            "--data",
            str(photos),
            "--input-size",
            size,
            "--checks",
            checks,
            "--n",
            str(n),
            "--out",
            str(out),
            "--no-progress",
            "--device",
            DEVICE,
            *extra,
        ],
        source,
    )


def estimate_rows(photos: Path, model: Path, checks: str, size: str, n: int) -> list[tuple[str, ...]]:
    """Per check: estimated and measured forward/backward passes and seconds, from one audit's meta.json;
    the estimate split into model time and the check's other work (``work_seconds``)."""
    with tempfile.TemporaryDirectory(prefix="report-estimate-", dir=ROOT) as folder:
        out = Path(folder) / "report"
        load = os.getloadavg()[0]
        wall, _, code, err = audit(photos, model, out, [], checks=checks, n=n, size=size)
        if code != 0:
            return [("(audit failed)", f"exit {code}: {err}")]
        meta = json.loads((out / "meta.json").read_text())
    rows = []

    def seconds(value: float | None) -> str:
        return "?" if value is None else f"{value:.1f}"

    for name, info in meta["checks"].items():
        est = info["estimate"]
        mark = "<=" if est.get("bound") else ""
        rows.append(
            (
                name,
                f"{mark}{est.get('forward', '?')}",
                str(info["forward"]),
                f"{mark}{est.get('backward', '?')}",
                str(info["backward"]),
                seconds(est.get("model_seconds")),
                seconds(est.get("work_seconds")),
                seconds(est.get("seconds")),
                f"{info['seconds']:.1f}",
                "?" if not est.get("seconds") else f"{info['seconds'] / est['seconds']:.2f}",
            )
        )
    total = meta["estimated_seconds"]
    rows.append(
        ("all checks", *[""] * 6, f"{total:.1f}", f"{meta['work_seconds']:.1f}", f"{meta['work_seconds'] / total:.2f}")
    )
    calibration = meta["calibration"] or {}
    spent = (calibration.get("calibration_s") or 0.0) + (calibration.get("probes_s") or 0.0)
    rows.append(("(calibration and probes, s)", *[""] * 7, f"{spent:.1f}", ""))
    rows.append(("(run wall s, incl. loading and report)", *[""] * 7, f"{wall:.1f}", ""))
    # other programs' load slows the run but not the calibration before it (or the other way round)
    rows.append(
        (
            f"(load average before / after, {os.cpu_count()} cores)",
            *[""] * 7,
            f"{load:.1f} / {os.getloadavg()[0]:.1f}",
            "",
        )
    )
    return rows


def profile_rows(photos: Path, model: Path, profile: str, size: str, n: int, target_s: float) -> list[tuple[str, ...]]:
    """Per check of one ``--checks PROFILE`` audit (meta.json): seconds, forward and backward passes, share of the
    summed check seconds and the estimate before the run; then the sum, the run's wall time against ``target_s``, its
    CPU seconds and the load average before and after (other work on the machine slows every check alike; the CPU
    seconds over the cores are a rough figure for the wall time of the run alone, if it kept every core busy)."""
    import resource

    out = ROOT / f"report-profile-{profile}-{size}-{n}"
    load_before = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, rss, code, err = audit(photos, model, out, [], checks=profile, n=n, size=size)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the audit's CPU time, once its process is reaped
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    load_after = os.getloadavg()[0]
    if code != 0:
        return [("(audit failed)", f"exit {code}: {err}")]
    meta = json.loads((out / "meta.json").read_text())
    checks = meta["checks"]
    total = sum(info.get("seconds") or 0.0 for info in checks.values())
    rows = []
    for name, info in checks.items():
        seconds = info.get("seconds")
        estimated = info.get("estimate", {}).get("seconds")
        rows.append(
            (
                name,
                info.get("status", "?"),
                "-" if seconds is None else f"{seconds:.1f}",
                str(info.get("forward", "-")),
                str(info.get("backward", "-")),
                "-" if not seconds or not total else f"{100 * seconds / total:.0f}%",
                "-" if estimated is None else f"{estimated:.1f}",
            )
        )
    timed = {name: info["seconds"] for name, info in checks.items() if info.get("seconds")}
    dominant = max(timed, key=timed.get) if timed else "-"
    ok = "yes" if wall <= target_s else "NO"
    rows.append(("sum of check seconds", "", f"{total:.1f}", "", "", "100%", f"{meta['estimated_seconds']:.1f}"))
    rows.append((f"dominant check: {dominant}", "", "", "", "", "", ""))
    rows.append(
        (f"run wall s (target <= {target_s:.0f}: {ok}), peak RSS {rss:.2f} GB", "", f"{wall:.1f}", "", "", "", "")
    )
    rows.append(
        (
            f"run CPU s (all cores; / {os.cpu_count()} = {cpu / (os.cpu_count() or 1):.0f})",
            "",
            f"{cpu:.1f}",
            "",
            "",
            "",
            "",
        )
    )
    rows.append((f"load average before / after: {load_before:.1f} / {load_after:.1f}", "", "", "", "", "", ""))
    return rows


def profile_plan(photos: Path, model: Path, profile: str, size: str, n: int) -> list[str]:
    """The plan ``--checks PROFILE --dry-run`` prints on DEVICE (its table and calibration line)."""
    cli = [sys.executable, "-m", "robustcnn", "audit", "--model", str(model), "--arch", "torchvision:resnet18"]
    cli += ["--data", str(photos), "--input-size", size, "--checks", profile, "--n", str(n), "--device", DEVICE]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    started = time.perf_counter()
    run = subprocess.run([*cli, "--dry-run"], capture_output=True, text=True, env=env)
    lines = [line for line in (run.stdout + run.stderr).splitlines() if not line.startswith(("running", "robustcnn:"))]
    return [*lines, f"(dry run took {time.perf_counter() - started:.0f} s, exit {run.returncode})"]


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows] if i < len(r)) for i in range(len(header))]
    for r in [header, *rows]:
        print(
            "  ".join(
                str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=False))
            )
        )


def index_seconds(folder: Path) -> tuple[float, int]:
    from robustcnn.data import DatasetRef

    started = time.perf_counter()
    index = DatasetRef(str(folder)).index()
    return time.perf_counter() - started, len(index.test)


def decode_rates(photos: Path, count: int, workers: int) -> tuple[float, float]:
    """Images per second: robustcnn's FileSource versus a DataLoader + PIL + torchvision transforms."""
    import torch
    from PIL import Image
    from torchvision import transforms

    from robustcnn.data import DatasetRef, Policy, Target

    index = DatasetRef(str(photos)).index()
    positions = [int(p) for p in index.test.draw(count, 0)]
    paths = [photos / index.test.ids[p] for p in positions]
    source = index.test.source
    source.workers = workers
    target = Target(3, (224, 224), Policy(256, (224, 224)))

    class Plain(torch.utils.data.Dataset):
        tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor()])

        def __len__(self) -> int:
            return len(paths)

        def __getitem__(self, i: int) -> torch.Tensor:
            with Image.open(paths[i]) as img:
                return self.tf(img.convert("RGB"))

    def ours() -> int:
        return len(source.read(positions, target, []))

    def plain() -> int:
        loader = torch.utils.data.DataLoader(Plain(), batch_size=50, num_workers=workers)
        return sum(len(batch) for batch in loader)

    rates = {}
    for name, fn in (("plain", plain), ("ours", ours), ("plain", plain), ("ours", ours)):  # second pass: warm both
        started = time.perf_counter()
        n = fn()
        rates[name] = n / (time.perf_counter() - started)
    return rates["ours"], rates["plain"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--tiny", type=int, default=50000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--decode", type=int, default=600, help="images decoded in the throughput comparison")
    parser.add_argument("--skip-models", action="store_true", help="leave out the other photo-size architectures")
    parser.add_argument("--device", default="cpu", help="device of the audits (cpu, cuda)")
    parser.add_argument("--baseline-repo", type=Path, help="also run the audits of 1 with robustcnn from this tree")
    parser.add_argument(
        "--estimate-checks",
        default="clean,adversarial,fooling-gradient,noise,occlusion,spatial,corruptions,confidence",
        help="checks of the estimate-versus-actual audit ('' skips it)",
    )
    parser.add_argument("--estimate-size", default="32x32", help="input size of the estimate-versus-actual audit")
    parser.add_argument("--estimate-n", type=int, default=50, help="images of the estimate-versus-actual audit")
    parser.add_argument("--profile", default="", help="also audit the train/test photos with this profile (6.)")
    parser.add_argument("--profile-size", default="224x224", help="input size of the profile audit")
    parser.add_argument("--profile-n", type=int, default=100, help="images of the profile audit")
    parser.add_argument("--profile-minutes", type=float, default=15, help="wall-time target of the profile audit")
    parser.add_argument("--split-files", default="1000,500", help="train,test photos of the profile audit's folder")
    parser.add_argument(
        "--estimate-profile", default="standard", help="profile whose plan at 224x224 is printed ('' skips it)"
    )
    parser.add_argument("--skip-audits", action="store_true", help="leave out the clean audits of 1")
    parser.add_argument("--skip-index", action="store_true", help="leave out indexing the tiny files")
    parser.add_argument("--skip-decode", action="store_true", help="leave out the decode throughput comparison")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    ROOT.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    photos, tiny, model = make_photos(args.files, args.workers), make_tiny(args.tiny), make_model()
    size_mb = sum(f.stat().st_size for f in photos.rglob("*.jpg")) / 1e6
    print(
        f"fixtures ready in {time.perf_counter() - t:.0f} s: {args.files} JPEGs 500x375 ({size_mb:.0f} MB), "
        f"{args.tiny} tiny PNGs, resnet18 state_dict\n"
    )
    rows = []
    policy = ["--resize", "256", "--center-crop", "224"]
    variants = (
        ("stretch to 224x224", []),
        ("--resize 256 --center-crop 224", policy),
        ("the same, --batch-size 32", [*policy, "--batch-size", "32"]),
    )
    sources = [("", REPO)] + ([(" [baseline]", args.baseline_repo)] if args.baseline_repo else [])
    for label, extra in [] if args.skip_audits else variants:
        for tag, source in sources:
            wall, rss, code, err = audit(photos, model, ROOT / "report", extra, source=source)
            status = "" if code == 0 else f"  (exit {code}: {err})"
            ok = code == 0
            rows.append(
                (
                    f"audit --checks clean --n 50, {label}{tag}: wall s",
                    f"{wall:.1f}",
                    "<= 30",
                    wall <= 30 and ok,
                    status,
                )
            )
            rows.append(
                (
                    f"audit --checks clean --n 50, {label}{tag}: peak RSS GB",
                    f"{rss:.2f}",
                    "<= 1.5",
                    rss <= 1.5 and ok,
                    status,
                )
            )
    if not args.skip_index:
        seconds, n = index_seconds(tiny)
        rows.append((f"index {n} tiny files: s", f"{seconds:.2f}", "<= 5", seconds <= 5, ""))
    if not args.skip_models:
        for arch in PHOTO_ARCHS:
            wall, rss, code, err = audit(
                photos, make_model(arch), ROOT / "report", [*policy, "--batch-size", "25"], arch
            )
            status = "" if code == 0 else f"  (exit {code}: {err})"
            rows.append(
                (
                    f"{arch} state_dict, same audit at --batch-size 25: wall s / peak RSS GB",
                    f"{wall:.0f} / {rss:.2f}",
                    "runs",
                    code == 0,
                    status,
                )
            )
    if not args.skip_decode:
        ours, plain = decode_rates(photos, args.decode, args.workers)
        rows.append((f"decode to 224 px, {args.workers} workers: robustcnn img/s", f"{ours:.0f}", "", True, ""))
        rows.append((f"decode to 224 px, {args.workers} workers: DataLoader+PIL img/s", f"{plain:.0f}", "", True, ""))
        rows.append(
            ("decode throughput ratio robustcnn / DataLoader", f"{ours / plain:.2f}", ">= 0.8", ours / plain >= 0.8, "")
        )
    width = max((len(r[0]) for r in rows), default=0)
    for name, value, target, ok, note in [("measure", "value", "target", "ok", "")] * bool(rows) + rows:
        mark = ok if isinstance(ok, str) else "yes" if ok else "NO"
        print(f"{name.ljust(width)}  {value:>8}  {target:>7}  {mark}{note}")
    if args.estimate_checks:
        print(f"\nestimate before the run vs measured: resnet18, {args.estimate_size}, n={args.estimate_n}")
        header = ("check", "fwd est", "fwd", "bwd est", "bwd", "model est", "other est", "s est", "s", "s / est")
        print_table(header, estimate_rows(photos, model, args.estimate_checks, args.estimate_size, args.estimate_n))
    if args.profile:
        train, test = (int(v) for v in args.split_files.split(","))
        split = make_split_photos(train, test, args.workers)
        print(
            f"\n--checks {args.profile}: resnet18, {args.profile_size}, n={args.profile_n}, {split.name} "
            f"(train/test, group attribute 'light'), {os.cpu_count()} CPUs, device {DEVICE}"
        )
        header = ("check", "status", "s", "fwd", "bwd", "share", "s est")
        print_table(
            header,
            profile_rows(split, model, args.profile, args.profile_size, args.profile_n, 60 * args.profile_minutes),
        )
    if args.estimate_profile:
        print(f"\nplan of --checks {args.estimate_profile} on {DEVICE}: resnet18, 224x224, n=200 (--dry-run)")
        print("\n".join(profile_plan(photos, model, args.estimate_profile, "224x224", 200)))


if __name__ == "__main__":
    main()

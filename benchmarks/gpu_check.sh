#!/usr/bin/env bash
# One short CUDA run (about 8 minutes, under 9) for a lent GPU machine; CI never has one.
#   bash benchmarks/gpu_check.sh [OUTDIR]
# 1. the tests marked `gpu` (every check on CUDA agrees with the CPU, attacks keep their tensors on
#    the device, a real out-of-memory error halves the batch);
# 2. benchmarks/bench_scale.py with --device cuda (3,000 photos; estimate vs measured; the plan of
#    standard at 224 px on CUDA; quick at 224 px, n = 100; --skip-models: the photo-size
#    architectures ran in an earlier session);
# 3. quick at 224 px on 2 of the machine's CPU cores (taskset), beside the GPU work;
# 4. the demo audit (all checks, n = 200) on the machine's CPUs and on CUDA, per check: seconds and
#    model passes, printed as one table.
# Packages the GPU image lacks (foolbox, eagerpy, mlxtend, captum, fairlearn and their pure-Python
# needs) travel as wheels in .whl/, made on a networked machine with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform any -d .whl \
#       foolbox eagerpy gitpython gitdb smmap mlxtend captum fairlearn
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-/tmp/robustcnn-gpu}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 ROBUSTCNN_CACHE="$out/cache"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/robustcnn-site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/robustcnn-site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
python3 -c "import torch; print('torch', torch.__version__, '| device:', torch.cuda.get_device_name(0))" || exit 1

# quick at 224 px on two of the machine's CPU cores (taskset), beside the GPU work: a stand-in for a
# 2-core machine; --max-minutes keeps it inside this script (a partial report still times each
# finished check)
split=$(python3 -c "import sys; sys.path.insert(0, 'benchmarks'); import bench_scale as b; b.make_model(); print(b.make_split_photos(1000, 500, 8))")
if [ -n "$split" ]; then
    OMP_NUM_THREADS=2 taskset -c 14,15 timeout 480 python3 -m robustcnn audit \
        --model /tmp/robustcnn-bench-scale/torchvision-resnet18_state.pt --arch torchvision:resnet18 \
        --data "$split" --input-size 224x224 --checks quick --n 100 --max-minutes 6 --no-progress \
        --out "$out/quick-2cores" >"$out/quick-2cores.log" 2>&1 &
    two_cores=$!
fi

echo "== tests marked gpu"
timeout 150 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py tests/test_corruptions.py \
    --junitxml "$out/gpu_tests.xml" 2>&1 | tail -8

echo "== bench_scale on cuda: 3,000-photo clean audits, indexing, decoding, estimate vs measured, the plan of"
echo "   standard at 224 px, and quick at 224 px (n = 100) on a train/test folder"
timeout 300 python3 benchmarks/bench_scale.py --device cuda --workers 8 --decode 600 --skip-models \
    --profile quick 2>&1 | tail -60

echo "== demo audit: cpu and cuda"
for device in cpu cuda; do
    timeout 150 python3 -m robustcnn audit --n 200 --device "$device" --out "$out/demo-$device" --no-progress \
        >"$out/demo-$device.log" 2>&1 || echo "demo on $device failed: $(tail -1 "$out/demo-$device.log")"
done
[ -n "${two_cores:-}" ] && wait "$two_cores"
python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
metas = {d: json.loads((out / f"demo-{d}" / "meta.json").read_text()) for d in ("cpu", "cuda") if (out / f"demo-{d}" / "meta.json").exists()}
if len(metas) == 2:
    print(f"{'check':<18} {'cpu s':>8} {'cuda s':>8} {'speed-up':>8} {'cuda est s':>10} {'est/meas':>8} {'forward':>10} {'backward':>10}")
    for name, info in metas["cuda"]["checks"].items():
        cpu = metas["cpu"]["checks"][name]["seconds"]
        gpu = info["seconds"]
        est = (info.get("estimate") or {}).get("seconds")
        est_text = f"{est:10.1f} {est / gpu:8.2f}" if est else f"{'?':>10} {'':>8}"
        print(f"{name:<18} {cpu:8.1f} {gpu:8.1f} {cpu / gpu:8.1f} {est_text} {info['forward']:>10} {info['backward']:>10}")

    def total(m: dict) -> float:
        return sum(c["seconds"] for c in m["checks"].values())

    print(f"{'all checks':<18} {total(metas['cpu']):8.1f} {total(metas['cuda']):8.1f} {total(metas['cpu']) / total(metas['cuda']):8.1f}")
quick = out / "quick-2cores" / "meta.json"
if quick.exists():
    meta = json.loads(quick.read_text())
    print(f"\nquick at 224 px, n = 100, on 2 CPU cores ({meta.get('status', 'complete')}): check, seconds, estimate")
    for name, info in meta["checks"].items():
        est = (info.get("estimate") or {}).get("seconds")
        print(f"{name:<18} {info.get('seconds') or 0:8.1f} {est or 0:8.1f}  {info.get('status', '')}")
    print(f"{'all run':<18} {meta['seconds']:8.1f} {meta['estimated_seconds']:8.1f}")
else:
    print("quick on 2 cores wrote no meta.json:", (out / "quick-2cores.log").read_text()[-400:] if (out / "quick-2cores.log").exists() else "no log")
PY

#!/usr/bin/env bash
# One short CUDA run (about 6 minutes, under 8) for a lent GPU machine; CI never has one.
#   bash benchmarks/gpu_check.sh [OUTDIR]
# 1. the tests marked `gpu` (every check on CUDA agrees with the CPU, attacks keep their tensors on
#    the device, a real out-of-memory error halves the batch);
# 2. benchmarks/bench_scale.py with --device cuda (3,000 photos, resnet18 and the photo-size models);
# 3. the plan and estimated cost of the standard profile at 224 px on CUDA (--dry-run);
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

echo "== tests marked gpu"
timeout 240 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py tests/test_corruptions.py \
    --junitxml "$out/gpu_tests.xml" 2>&1 | tail -15

echo "== bench_scale on cuda"
timeout 200 python3 benchmarks/bench_scale.py --device cuda --workers 8 --decode 600 2>&1 | tail -16

echo "== plan of the standard profile on 224 px photos (resnet18, n = 200): estimated cost on cuda"
timeout 120 python3 -m robustcnn audit --model /tmp/robustcnn-bench-scale/torchvision-resnet18_state.pt \
    --arch torchvision:resnet18 --data /tmp/robustcnn-bench-scale/photos-3000 --input-size 224x224 \
    --checks standard --device cuda --dry-run 2>&1 | tail -20

echo "== demo audit: cpu and cuda"
for device in cpu cuda; do
    timeout 150 python3 -m robustcnn audit --n 200 --device "$device" --out "$out/demo-$device" --no-progress \
        >"$out/demo-$device.log" 2>&1 || echo "demo on $device failed: $(tail -1 "$out/demo-$device.log")"
done
python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
metas = {d: json.loads((out / f"demo-{d}" / "meta.json").read_text()) for d in ("cpu", "cuda") if (out / f"demo-{d}" / "meta.json").exists()}
if len(metas) == 2:
    print(f"{'check':<18} {'cpu s':>8} {'cuda s':>8} {'speed-up':>8} {'forward':>10} {'backward':>10}")
    for name, info in metas["cuda"]["checks"].items():
        cpu = metas["cpu"]["checks"][name]["seconds"]
        gpu = info["seconds"]
        print(f"{name:<18} {cpu:8.1f} {gpu:8.1f} {cpu / gpu:8.1f} {info['forward']:>10} {info['backward']:>10}")
    total = lambda m: sum(c["seconds"] for c in m["checks"].values())  # noqa: E731
    print(f"{'all checks':<18} {total(metas['cpu']):8.1f} {total(metas['cuda']):8.1f} {total(metas['cpu']) / total(metas['cuda']):8.1f}")
PY

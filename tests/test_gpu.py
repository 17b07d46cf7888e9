"""CUDA checks, run by benchmarks/gpu_check.sh on a GPU machine and skipped elsewhere: every check
runs on the device and agrees with the CPU, attacks keep their tensors on the device, and a real
out-of-memory error makes the batch smaller instead of ending the run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import robustcnn
from robustcnn.batch_backoff import run_with_backoff
from robustcnn.models import ModelRef

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

DEMO_PLAN = Path(__file__).resolve().parents[1] / "audits" / "demo.toml"


def test_every_check_runs_on_cuda_and_agrees_with_cpu(tmp_path):
    cpu = robustcnn.audit(plan=DEMO_PLAN, n=64, device="cpu", out=tmp_path / "cpu")
    gpu = robustcnn.audit(plan=DEMO_PLAN, n=64, device="cuda", out=tmp_path / "gpu")
    assert gpu.meta["device"] == "cuda"
    assert set(gpu.table["check"]) == set(cpu.table["check"])
    on_cpu, on_gpu = cpu.headlines(), gpu.headlines()
    assert set(on_gpu) == set(on_cpu)
    clean = lambda r: float(r.table.query("check == 'clean' and metric == 'accuracy'")["value"].iloc[0])  # noqa: E731
    assert abs(clean(gpu) - clean(cpu)) <= 1 / 64
    for check, head in on_gpu.items():
        assert math.isnan(head.value) == math.isnan(on_cpu[check].value), check


def test_attacks_keep_their_tensors_on_the_device(tmp_path, monkeypatch):
    from robustcnn.models import AuditedModel

    devices: set[str] = set()
    forward = AuditedModel.forward

    def recording(self, x):
        devices.add(x.device.type)
        return forward(self, x)

    monkeypatch.setattr(AuditedModel, "forward", recording)
    robustcnn.audit(
        plan=DEMO_PLAN, checks=["adversarial", "corruptions", "spatial"], n=32, device="cuda", out=tmp_path / "r"
    )
    assert devices == {"cuda"}


def test_real_out_of_memory_halves_the_batch():
    model = ModelRef("x", module=__import__("torchvision").models.resnet18(num_classes=10)).load(
        10, 3, (224, 224), "cuda"
    )
    images = torch.rand(1024, 3, 224, 224)
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, 3 * 2**30 / total))
    try:
        logits, size = run_with_backoff(lambda batch: model.logits(images, batch), 1024, "cuda")
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert size < 1024 and logits.shape == (1024, 10) and torch.isfinite(logits).all()

"""The batch size chosen from a model's activation memory (robustcnn.models.batching)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustcnn.models import MIN_BATCH, AuditedModel
from robustcnn.models.batching import CPU_BUDGET, MAX_BATCH, choose_batch_size, saved_activation_bytes


def _wrapped(net: nn.Module, channels: int = 3) -> AuditedModel:
    return AuditedModel(net.eval(), num_classes=10, in_channels=channels, input_size=None)


def _wide(width: int, size: int) -> nn.Module:
    """Two 3x3 convolutions of ``width`` channels at full resolution: saves about 3 activations of
    width x size x size floats per image (the input to each conv and the ReLU's output)."""
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, 10),
    )


def test_saved_bytes_count_activations_per_image_and_leave_out_the_weights():
    torch.manual_seed(0)
    model = _wrapped(_wide(64, 32))
    one, two = (saved_activation_bytes(model, torch.rand(k, 3, 32, 32)) for k in (1, 2))
    activation = 64 * 32 * 32 * 4  # one width x size x size float32 map
    assert abs(one - two) <= 0.01 * one  # per image: the weights (shared) are not counted
    assert activation <= one <= 4 * activation + 3 * 32 * 32 * 4


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_saved_bytes_work_for_torchscript():
    torch.manual_seed(0)
    eager = _wide(16, 16)
    scripted = torch.jit.script(eager)
    x = torch.rand(2, 3, 16, 16)
    assert saved_activation_bytes(_wrapped(scripted), x) > 0


def test_the_pass_counter_is_untouched():
    model = _wrapped(_wide(8, 8))
    saved_activation_bytes(model, torch.rand(2, 3, 8, 8))
    assert model.counter.snapshot() == (0, 0)


def test_small_models_get_the_cap_and_large_activations_a_smaller_batch():
    torch.manual_seed(0)
    small = choose_batch_size(_wrapped(_wide(8, 8)), torch.rand(2, 3, 8, 8), None)
    assert small.size == MAX_BATCH and small.auto
    model = _wrapped(_wide(64, 96))
    big = choose_batch_size(model, torch.rand(2, 3, 96, 96), None)
    assert MIN_BATCH <= big.size < MAX_BATCH
    assert big.size == max(MIN_BATCH, CPU_BUDGET // big.activation_bytes)
    assert big.budget_bytes == CPU_BUDGET
    assert "auto" in big.describe() and f"batch size {big.size}" in big.describe()


def test_a_given_batch_size_is_kept():
    choice = choose_batch_size(_wrapped(_wide(64, 96)), torch.rand(2, 3, 96, 96), 7)
    assert choice.size == 7 and not choice.auto and choice.activation_bytes is None
    assert choice.to_dict() == {"size": 7, "auto": False, "activation_bytes_per_image": None, "budget_bytes": None}


def test_an_audit_records_its_batch_choice_and_the_demo_keeps_256(tmp_path):
    import robustcnn

    report = robustcnn.audit(data="digits", n=20, checks=["clean"], out=tmp_path / "r")
    batch = report.meta["batch"]
    assert batch["auto"] and batch["size"] == MAX_BATCH and batch["activation_bytes_per_image"] > 0
    given = robustcnn.audit(data="digits", n=20, checks=["clean"], out=tmp_path / "g", batch_size=32)
    assert given.meta["batch"] == {"size": 32, "auto": False, "activation_bytes_per_image": None, "budget_bytes": None}
    assert (tmp_path / "r" / "results.csv").read_bytes() == (tmp_path / "g" / "results.csv").read_bytes()

"""Every registered check on degenerate data ends in a result or a one-line exit-4 error.

The datasets are tiny .npz files and the model a TorchScript CNN whose head is an ``fc`` layer
(the layout of torchvision's resnets), so the matrix stays fast at the cheapest options.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from robustcnn.checks import load_registry
from robustcnn.cli import main

# the smallest budgets each check accepts, so the matrix tests behaviour, not speed
CHEAP = {
    "adversarial": ['norms=["linf"]', 'attacks=["fgsm"]', "unbounded_images=0"],
    "fooling-gradient": ["steps=2", "prototype_steps=2"],
    "fooling-evolution": ["population=4", "generations=2"],
    "noise": ["n=4"],
    "patch": [
        "train_images=4",
        "epochs=1",
        "areas=[0.1]",
        'shapes=["square"]',
        "pilot_classes=2",
        "pilot_images=4",
        "pilot_epochs=1",
        "examples=1",
    ],
    "occlusion": ["examples=1"],
    "spatial": ["n_angles=3", "random_trials=1"],
    "corruptions": ["severities=[1]"],
    "label-issues": ["bootstrap=5"],
    "groups": ["bootstrap=5", "min_group_size=1"],
    "confidence": [
        "noise_n=4",
        "fooling_n=2",
        "fooling_steps=2",
        "adversarial_n=2",
        "adversarial_steps=2",
        "corruption_n=4",
        "max_per_set=4",
    ],
}


class TinyNet(nn.Module):
    def __init__(self, channels: int, classes: int, probabilities: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(16, classes)
        self.probabilities = probabilities

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))
        return out.softmax(dim=1) if self.probabilities else out


# name: (classes, channels, size, test counts per class, train counts per class or None, probabilities)
DATASETS = {
    "two-classes": (2, 1, 8, [6, 6], [6, 6], False),
    "class-with-one-image": (3, 1, 8, [4, 4, 1], [4, 4, 1], False),
    "five-images": (2, 1, 8, [3, 2], None, False),
    "no-train-split": (3, 3, 8, [4, 4, 4], None, False),
    "train-split-without-a-class": (3, 1, 8, [4, 4, 4], [5, 5, 0], False),
    "rgb-224": (2, 3, 224, [2, 2], None, False),
    "probabilities": (3, 1, 8, [4, 4, 4], [4, 4, 4], True),
}


def _npz(path, classes, channels, size, test, train):
    gen = np.random.default_rng(0)

    def split(counts):
        y = np.concatenate([np.full(k, c) for c, k in enumerate(counts)]).astype(np.int64)
        x = (
            gen.random((len(y), channels, size, size), dtype=np.float32) * 0.5
            + (y[:, None, None, None] / classes) * 0.5
        )
        return x, y

    x, y = split(test)
    arrays = {"x": x, "y": y, "site": np.array(["a", "b"] * (len(y) // 2) + ["a"] * (len(y) % 2))}
    if train is not None:
        arrays["x_train"], arrays["y_train"] = split(train)
    np.savez(path, **arrays)


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("degenerate")
    torch.manual_seed(0)
    out = {}
    for name, (classes, channels, size, test, train, probabilities) in DATASETS.items():
        _npz(root / f"{name}.npz", classes, channels, size, test, train)
        model = torch.jit.script(TinyNet(channels, classes, probabilities).eval())
        torch.jit.save(model, str(root / f"{name}.pt"))
        out[name] = (root / f"{name}.npz", root / f"{name}.pt")
    return out


def _params():
    for dataset in DATASETS:
        for check in sorted(load_registry()):
            yield pytest.param(check, dataset, id=f"{check}-{dataset}")


@pytest.mark.parametrize("check, dataset", list(_params()))
def test_check_survives_degenerate_data(check, dataset, cases, tmp_path):
    data, model = cases[dataset]
    args = [
        "audit",
        "--model",
        str(model),
        "--data",
        str(data),
        "--checks",
        check,
        "--out",
        str(tmp_path / "r"),
        "--no-progress",
    ]
    for option in CHEAP.get(check, []):
        args += ["--set", f"{check}.{option}"]
    result = CliRunner().invoke(main, args)
    errors = [line for line in result.output.splitlines() if line.startswith("robustcnn: error:")]
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    assert result.exit_code == 0 or (result.exit_code == 4 and len(errors) == 1), result.output

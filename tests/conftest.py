"""Shared fixtures: the demo MNIST CNN (trained once into the repo-local cache) and its data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see robustcnn/_runtime.py
os.environ.setdefault("ROBUSTCNN_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "robustcnn"))

import torch

from robustcnn.checks import AuditData, CheckContext
from robustcnn.data import DatasetRef, stratified_sample
from robustcnn.models import AuditedModel, ModelRef

# Under pytest-xdist each worker gets one core: more torch threads only contend.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def mnist():
    """The mnist5k dataset (ImageData: 4,000 train / 1,000 test)."""
    return DatasetRef("mnist5k").load()


@pytest.fixture(scope="session")
def demo_model(mnist) -> AuditedModel:
    """The demo MNIST CNN, wrapped: takes [0, 1] NCHW pixels, returns logits."""
    model = ModelRef("demo:mnist-cnn").load(10, 1, (28, 28))
    model.validate(mnist.test.x[:2])
    return model


@pytest.fixture(scope="session")
def mnist_audit(mnist) -> AuditData:
    """200 class-stratified test images of mnist5k plus the training split, as checks see them."""
    idx = stratified_sample(mnist.test.y, 200, seed=0)
    return AuditData("mnist5k", mnist.classes, mnist.test.subset(idx), mnist.train)


@pytest.fixture
def ctx() -> CheckContext:
    return CheckContext(device="cpu", seed=0, batch_size=256)


import sys  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

"""Model loading: every supported format, and every bad-input case with one clear error."""

import warnings

import pytest
import torch
from helpers import save_exported, save_torchscript, small_net
from torch import nn

from robustcnn.errors import InvalidInputError, UsageError
from robustcnn.models import ModelRef, build_architecture

X = torch.rand(4, 1, 28, 28)


def expected(net: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return net(X)


def test_torchscript_loads_without_warnings(tmp_path):
    net = small_net()
    path = save_torchscript(net, tmp_path / "m.pt")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = ModelRef(str(path), trust=True).load(10, 1, (28, 28))
    model.validate(X)
    assert torch.allclose(model.logits(X), expected(net), atol=1e-5)
    assert not caught


def test_torch_export_archive(tmp_path):
    net = small_net()
    path = save_exported(net, tmp_path / "m.pt2")
    model = ModelRef(str(path), trust=True).load(10, 1, (28, 28))
    assert torch.allclose(model.logits(X), expected(net), atol=1e-5)


def test_state_dict_with_demo_arch_and_wrapped_keys(tmp_path):
    net = build_architecture("demo:mnist-cnn", 10, 1)
    torch.save({"state_dict": net.state_dict()}, tmp_path / "w.pt")
    model = ModelRef(str(tmp_path / "w.pt"), arch="demo:mnist-cnn").load(10, 1, (28, 28))
    assert torch.allclose(model.logits(X), expected(net.eval()), atol=1e-5)


def test_state_dict_with_torchvision_arch_adapts_channels(tmp_path):
    net = build_architecture("torchvision:resnet18", 10, 1)
    torch.save(net.state_dict(), tmp_path / "r.pt")
    model = ModelRef(str(tmp_path / "r.pt"), arch="torchvision:resnet18").load(10, 1, (32, 32))
    model.validate(torch.rand(2, 1, 32, 32))
    assert model.logits(torch.rand(3, 1, 32, 32)).shape == (3, 10)


def test_factory_arch(tmp_path):
    net = build_architecture("helpers:small_net", 10, 1)
    torch.save(net.state_dict(), tmp_path / "f.pt")
    model = ModelRef(str(tmp_path / "f.pt"), arch="helpers:small_net").load(10, 1, (28, 28))
    assert model.logits(X).shape == (4, 10)


def test_normalisation_lives_in_the_wrapper(tmp_path):
    net = small_net()
    path = save_torchscript(net, tmp_path / "m.pt")
    model = ModelRef(str(path), mean=(0.5,), std=(0.25,), trust=True).load(10, 1, (28, 28))
    with torch.no_grad():
        assert torch.allclose(model.logits(X), net((X - 0.5) / 0.25), atol=1e-5)


def test_pickled_module_needs_trust(tmp_path):
    torch.save(small_net(), tmp_path / "full.pt")
    with pytest.raises(InvalidInputError, match="--trust-model"):
        ModelRef(str(tmp_path / "full.pt")).load(10, 1, (28, 28))
    model = ModelRef(str(tmp_path / "full.pt"), trust=True).load(10, 1, (28, 28))
    assert model.logits(X).shape == (4, 10)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(InvalidInputError, match="not found"):
        ModelRef(str(tmp_path / "nope.pt")).load(10, 1, None)
    (tmp_path / "bad.pt").write_bytes(b"not a model at all")
    with pytest.raises(InvalidInputError, match="not a model file"):
        ModelRef(str(tmp_path / "bad.pt")).load(10, 1, None)


def test_state_dict_without_arch_or_mismatching(tmp_path):
    torch.save(small_net().state_dict(), tmp_path / "w.pt")
    with pytest.raises(InvalidInputError, match="--arch"):
        ModelRef(str(tmp_path / "w.pt")).load(10, 1, None)
    with pytest.raises(InvalidInputError, match="does not match architecture"):
        ModelRef(str(tmp_path / "w.pt"), arch="torchvision:resnet18").load(10, 1, None)
    with pytest.raises(InvalidInputError, match="no architecture"):
        ModelRef(str(tmp_path / "w.pt"), arch="torchvision:nonexistent_net").load(10, 1, None)
    with pytest.raises(UsageError):
        ModelRef(str(tmp_path / "w.pt"), arch="resnet18").load(10, 1, None)


class Flat(nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :10].reshape(-1)


class NaNs(nn.Module):
    def forward(self, x):
        return torch.full((x.shape[0], 10), float("nan"))


class Probabilities(nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :10].softmax(1)


@pytest.mark.parametrize(
    "net,match",
    [
        (Flat(), "expected \\(N, classes\\) logits"),
        (NaNs(), "NaN"),
        (nn.Sequential(nn.Flatten(), nn.Linear(784, 7)), "outputs 7 classes"),
        (nn.Sequential(nn.Conv2d(3, 4, 3)), "failed on input of shape"),
    ],
)
def test_bad_outputs_are_refused(tmp_path, net, match):
    path = save_torchscript(net, tmp_path / "m.pt")
    model = ModelRef(str(path), trust=True).load(10, 1, (28, 28))
    with pytest.raises(InvalidInputError, match=match):
        model.validate(X)


def test_probability_outputs_are_flagged(tmp_path):
    model = ModelRef("<in-memory>", module=Probabilities()).load(10, 1, (28, 28))
    model.validate(X)
    assert model.outputs_probabilities


def test_counter_counts_forward_and_gradient_images():
    model = ModelRef("<in-memory>", module=small_net()).load(10, 1, (28, 28))
    model.logits(X)
    x = X.clone().requires_grad_(True)
    model(x).sum().backward()
    assert model.counter.snapshot() == (8, 4)


def test_fingerprint_is_sha256_of_file(tmp_path):
    path = save_torchscript(small_net(), tmp_path / "m.pt")
    a, b = ModelRef(str(path)).fingerprint(), ModelRef(str(path)).fingerprint()
    assert a == b and len(a) == 64


class ViewsActivations(nn.Module):
    """A classic hand-written CNN: ``.view`` of a conv activation, which channels-last memory breaks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 13 * 13, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(torch.relu(self.conv(x)), 2)
        return self.fc(x.view(x.size(0), -1))


@pytest.mark.parametrize("source", ["demo", "torchscript", "export", "views"])
def test_layout_choice_keeps_logits_and_falls_back(tmp_path, source):
    """On CPU the network runs channels-last when it can, with the same logits; one that cannot keeps NCHW."""
    if source == "demo":
        ref = ModelRef("demo:mnist-cnn")
    elif source == "views":
        ref = ModelRef("memory", module=ViewsActivations().eval())
    else:
        net = small_net()
        path = (
            save_torchscript(net, tmp_path / "m.pt")
            if source == "torchscript"
            else save_exported(net, tmp_path / "m.pt2")
        )
        ref = ModelRef(str(path), trust=True)
    model = ref.load(10, 1, (28, 28))
    before = model.logits(X)
    model.choose_layout(X)
    assert torch.allclose(model.logits(X), before, atol=1e-4)
    assert model.memory_format == ("contiguous" if source == "views" else "channels_last")
    if source == "demo":
        assert model.net.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    if source == "views":
        assert all(p.is_contiguous() for p in model.net.parameters())

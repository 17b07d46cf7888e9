"""Models built to mislead gradient attacks (Athalye, Carlini & Wagner 2018), for the tests of
the adversarial check: each is as fragile as the demo CNN it wraps, but hides it from gradients."""

from __future__ import annotations

import torch
from torch import nn

from robustcnn.models import AuditedModel


class SaturatedSoftmax(nn.Module):
    """Logits scaled by a huge temperature (defensive distillation at test time): the softmax
    saturates in float32, so the cross-entropy gradient is exactly zero. Margin losses still work."""

    def __init__(self, net: nn.Module, temperature: float = 1e4) -> None:
        super().__init__()
        self.net, self.temperature = net, temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * self.temperature


class QuantisedInput(nn.Module):
    """Rounds pixels to ``levels`` steps before the network: a non-differentiable input step whose
    gradient is zero everywhere, so every gradient attack is blind and only black-box search works."""

    def __init__(self, net: nn.Module, levels: int = 8) -> None:
        super().__init__()
        self.net, self.levels = net, levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.round(x * self.levels) / self.levels)


class SoftmaxOutputs(nn.Module):
    """Returns probabilities instead of logits."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).softmax(dim=1)


class FirstClasses(nn.Module):
    """The first ``k`` logits only: a k-class model made from the 10-class demo CNN."""

    def __init__(self, net: nn.Module, k: int) -> None:
        super().__init__()
        self.net, self.k = net, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[:, : self.k]


def wrap(net: nn.Module, num_classes: int = 10, sample: torch.Tensor | None = None) -> AuditedModel:
    """An AuditedModel for 28x28 grayscale inputs; ``sample`` runs ``validate`` (probability detection)."""
    model = AuditedModel(net, num_classes, 1, (28, 28), name=type(net).__name__)
    if sample is not None:
        model.validate(sample)
    return model

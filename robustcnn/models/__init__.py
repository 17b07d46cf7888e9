"""Load a user's trained model and wrap it so every check sees [0, 1] NCHW pixels.

Sources: a state_dict (``torch.save`` or safetensors) plus an architecture
(``--arch torchvision:resnet18`` or ``package.module:factory``), demo zoo names
(``demo:mnist-cnn``) and, only with ``trust=True``, files that can run code when loaded:
``torch.export`` archives, TorchScript and full pickles (see ``robustcnn.models.files``).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import InvalidInputError, UsageError
from .files import read_model_file


@dataclass
class EvalCounter:
    """Counts images pushed through the model: forward passes and gradient passes."""

    forward: int = 0
    backward: int = 0

    def snapshot(self) -> tuple[int, int]:
        return self.forward, self.backward


MIN_BATCH = 16  # smallest batch the network sees; see AuditedModel.forward


class AuditedModel(nn.Module):
    """A classifier taking [0, 1] pixels, NCHW float32, returning (N, classes) logits.

    Normalisation (``mean``/``std``) is applied inside, so attacks never see it.
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        in_channels: int,
        input_size: tuple[int, int] | None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        name: str = "model",
    ) -> None:
        super().__init__()
        self.net = net
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.input_size = input_size
        self.name = name
        self.bounds = (0.0, 1.0)
        self.outputs_probabilities = False
        self.memory_format = "contiguous"
        self.counter = EvalCounter()
        self.register_buffer("mean", _channel_tensor(mean, in_channels, 0.0))
        self.register_buffer("std", _channel_tensor(std, in_channels, 1.0))
        self.eval()

    def train(self, mode: bool = True) -> AuditedModel:
        """Set the mode of the network; torch.export modules are frozen in eval and refuse it."""
        self.training = mode
        try:
            self.net.train(mode)
        except NotImplementedError:
            pass
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of ``x``. A batch of fewer than ``MIN_BATCH`` images is padded with zero images
        (which get no gradient), since BLAS and oneDNN take differently rounded kernels for a few
        rows (the demo CNN's logits change in the last bit at batch sizes 1-3, 5-7, 9-11): an
        image's logits then do not depend on how many images share its batch."""
        n = x.shape[0]
        self.counter.forward += n
        if torch.is_grad_enabled() and x.requires_grad:
            self.counter.backward += n
        if 0 < n < MIN_BATCH:
            x = torch.cat([x, x.new_zeros((MIN_BATCH - n, *x.shape[1:]))])
        return self.net((x - self.mean) / self.std)[:n]

    @property
    def device(self) -> torch.device:
        return self.mean.device

    @torch.no_grad()
    def logits(self, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Logits for any number of images, evaluated in batches, returned on CPU."""
        out = [self(x[i : i + batch_size].to(self.device)).float().cpu() for i in range(0, len(x), batch_size)]
        if not out:
            return torch.empty(0, self.num_classes)
        return torch.cat(out)

    def validate(self, sample: torch.Tensor) -> None:
        """Run a small batch and check the output is finite (N, classes) logits."""
        sample = sample[:2].to(self.device)
        try:
            with torch.no_grad():
                out = self.net((sample - self.mean) / self.std)
        except Exception as exc:  # the user's model raised: report its first line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InvalidInputError(
                f"model '{self.name}' failed on input of shape {tuple(sample.shape)}: {first}; "
                "check --channels/--input-size or the model's expected input"
            ) from exc
        if not isinstance(out, torch.Tensor):
            raise InvalidInputError(
                f"model '{self.name}' returned {type(out).__name__}, expected a logit tensor; "
                "wrap it so forward() returns (N, classes) logits"
            )
        if out.dim() != 2 or out.shape[0] != sample.shape[0]:
            raise InvalidInputError(
                f"model '{self.name}' returned shape {tuple(out.shape)} for {sample.shape[0]} images, "
                "expected (N, classes) logits"
            )
        if out.shape[1] != self.num_classes:
            raise InvalidInputError(
                f"model '{self.name}' outputs {out.shape[1]} classes but {self.num_classes} were expected; "
                "pass the right --num-classes or dataset"
            )
        if not torch.isfinite(out).all():
            raise InvalidInputError(f"model '{self.name}' produced NaN or infinite outputs on valid images")
        rows_sum = out.sum(dim=1)
        self.outputs_probabilities = bool(
            (out >= 0).all() and torch.allclose(rows_sum, torch.ones_like(rows_sum), atol=1e-4)
        )

    def choose_layout(self, sample: torch.Tensor) -> None:
        """On CPU, run the network in channels-last (NHWC) memory when it gives the same logits on
        ``sample``: oneDNN's convolutions and pooling prefer that layout (max pooling on NCHW
        activations is several times slower, and the demo CNN runs 1.9x faster on 2 threads). Networks that
        cannot (e.g. a ``.view`` of an activation) stay NCHW. The rule does not depend on timing,
        so a seed still gives the same results; the choice is recorded in ``memory_format``.
        Weights keep their values; only their memory layout changes."""
        if self.device.type != "cpu" or not any(p.dim() == 4 for p in self.net.parameters()):
            return
        batch = (sample.to(self.device) - self.mean) / self.std
        with torch.no_grad():
            reference = self.net(batch)
            try:
                self.net.to(memory_format=torch.channels_last)
                out = self.net(batch)
                same = out.shape == reference.shape and torch.allclose(out, reference, rtol=1e-4, atol=1e-4)
            except Exception:  # the user's network cannot run channels-last
                same = False
        if same:
            self.memory_format = "channels_last"
        else:
            self.net.to(memory_format=torch.contiguous_format)


def _channel_tensor(values: Sequence[float] | None, channels: int, default: float) -> torch.Tensor:
    if values is None:
        values = [default]
    values = list(values)
    if len(values) == 1:
        values = values * channels
    if len(values) != channels:
        raise UsageError(f"normalisation has {len(values)} values but the model takes {channels} channels")
    if default == 1.0 and any(v <= 0 for v in values):
        raise UsageError("--std values must be positive")
    return torch.tensor(values, dtype=torch.float32).view(1, channels, 1, 1)


@dataclass
class ModelRef:
    """Where a model comes from and how to wrap it; ``load()`` gives an AuditedModel."""

    spec: str = "demo:mnist-cnn"
    arch: str | None = None
    num_classes: int | None = None
    in_channels: int | None = None
    input_size: tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    trust: bool = False
    name: str | None = None
    module: nn.Module | None = field(default=None, repr=False)
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def is_demo(self) -> bool:
        return self.spec.startswith("demo:")

    def display_name(self) -> str:
        if self.name:
            return self.name
        if self.module is not None:
            return type(self.module).__name__
        if self.is_demo:
            return self.spec.split(":", 1)[1]
        return Path(self.spec).stem

    def fingerprint(self) -> str:
        """sha256 of the model file (and architecture), computed once."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            if self.module is not None:
                for key, tensor in self.module.state_dict().items():
                    h.update(key.encode())
                    h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            elif self.is_demo:
                from . import zoo

                h.update(zoo.weights_path(self.spec.split(":", 1)[1]).read_bytes())
            else:
                h.update(_read_file(self.spec))
            h.update(repr((self.arch, self.mean, self.std)).encode())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def describe(self) -> dict:
        return {
            "name": self.display_name(),
            "spec": self.spec,
            "arch": self.arch,
            "mean": list(self.mean) if self.mean else None,
            "std": list(self.std) if self.std else None,
            "fingerprint": self.fingerprint(),
        }

    def load(
        self, num_classes: int, in_channels: int, input_size: tuple[int, int] | None, device: str = "cpu"
    ) -> AuditedModel:
        """Load the network; ``num_classes``/``in_channels`` come from the data unless set here."""
        num_classes = self.num_classes or num_classes
        in_channels = self.in_channels or in_channels
        if self.module is not None:
            net = self.module
        elif self.is_demo:
            from . import zoo

            net, recipe_info = zoo.load_demo(self.spec.split(":", 1)[1])
            num_classes = recipe_info["num_classes"]
            in_channels = recipe_info["in_channels"]
            input_size = tuple(recipe_info["input_size"])
        else:
            net = _load_network(self, num_classes, in_channels)
        if self.module is None:
            # robustcnn's own copy: an audit never trains it, so its weights need no gradients, and
            # attacks that call backward() (foolbox's) compute the input's alone (a 10-step FMN
            # 1.7x faster at 32x32); a module handed in is the caller's and is left as it is
            for weight in net.parameters():  # (TorchScript modules refuse nn.Module.requires_grad_)
                weight.requires_grad_(False)
        model = AuditedModel(net, num_classes, in_channels, input_size, self.mean, self.std, self.display_name())
        return model.to(device)


def _require_file(path: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise InvalidInputError(f"model file not found: {path}")
    if p.is_dir():
        raise InvalidInputError(f"model path is a directory, expected a file: {path}")
    return p


def _read_file(path: str) -> bytes:
    return _require_file(path).read_bytes()


def _load_network(ref: ModelRef, num_classes: int, in_channels: int) -> nn.Module:
    path = _require_file(ref.spec)
    obj = read_model_file(path, ref.trust)
    if isinstance(obj, nn.Module):
        return obj
    state = _extract_state_dict(obj, path)
    if ref.arch is None:
        raise InvalidInputError(
            f"{path} holds a state_dict (weights only); name its architecture with --arch, "
            "e.g. --arch torchvision:resnet18 or --arch mypkg.models:make_net"
        )
    net = build_architecture(ref.arch, num_classes, in_channels)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise InvalidInputError(f"state_dict in {path} does not match architecture {ref.arch}: {detail}") from exc
    return net


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _extract_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                return inner
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return {k.removeprefix("module."): v for k, v in obj.items()}
    raise InvalidInputError(f"{path} holds a {type(obj).__name__}, not a state_dict or model")


def build_architecture(arch: str, num_classes: int, in_channels: int) -> nn.Module:
    """Build ``torchvision:NAME``, ``timm:NAME``, ``demo:NAME`` or ``package.module:factory`` untrained.

    Nothing is downloaded: torchvision and timm models are built without pretrained weights
    (the user's state_dict supplies them). timm is an optional extra (``robustcnn[timm]``).
    """
    if ":" not in arch:
        raise UsageError(f"--arch must look like torchvision:resnet18 or package.module:factory, got '{arch}'")
    source, name = arch.split(":", 1)
    if source == "torchvision":
        import torchvision

        try:
            net = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
        except (ValueError, KeyError) as exc:
            raise InvalidInputError(f"torchvision has no architecture '{name}'") from exc
        if in_channels != 3:
            _adapt_first_conv(net, in_channels)
        return net
    if source == "timm":
        return _build_timm(name, num_classes, in_channels)
    if source in ("demo", "zoo"):
        from . import zoo

        return zoo.build_architecture(name, in_channels=in_channels, num_classes=num_classes)
    try:
        module = importlib.import_module(source)
        factory: Callable[..., nn.Module] = getattr(module, name)
    except (ImportError, AttributeError) as exc:
        raise InvalidInputError(f"cannot import architecture factory '{arch}': {_first_line(exc)}") from exc
    params = inspect.signature(factory).parameters
    kwargs = {k: v for k, v in (("num_classes", num_classes), ("in_channels", in_channels)) if k in params}
    net = factory(**kwargs)
    if not isinstance(net, nn.Module):
        raise InvalidInputError(f"factory '{arch}' returned {type(net).__name__}, not a torch.nn.Module")
    return net


def _build_timm(name: str, num_classes: int, in_channels: int) -> nn.Module:
    try:
        import timm
    except ImportError as exc:
        raise InvalidInputError("--arch timm:NAME needs the timm package: pip install 'robustcnn[timm]'") from exc
    if not timm.is_model(name):
        raise InvalidInputError(f"timm has no architecture '{name}' (see timm.list_models())")
    return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels)


def _adapt_first_conv(net: nn.Module, in_channels: int) -> None:
    """Replace the first Conv2d so the network takes ``in_channels`` channels."""
    for parent in net.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                new = nn.Conv2d(
                    in_channels,
                    child.out_channels,
                    child.kernel_size,
                    child.stride,
                    child.padding,
                    child.dilation,
                    child.groups if child.groups == 1 else in_channels,
                    child.bias is not None,
                    child.padding_mode,
                )
                setattr(parent, child_name, new)
                return
    raise InvalidInputError("cannot adapt the architecture's input channels: it has no Conv2d layer")

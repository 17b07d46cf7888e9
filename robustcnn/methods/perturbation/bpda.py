"""BPDA, Backward Pass Differentiable Approximation (Athalye, Carlini & Wagner 2018, "Obfuscated
gradients give a false sense of security", section 4.1): run the real model forward, and where a
step has no useful gradient (rounding, quantisation, JPEG, median filters) replace only its
backward pass by that of a differentiable approximation.

Two ways to find the steps, neither of which needs the model's source:

- operations: while the model runs, a torch function mode intercepts the piecewise-constant
  operations (``round``, ``floor``, ``ceil``, ``trunc``, ``sign``, and their in-place forms) and
  the median (``median``/``nanmedian`` along a dimension). Each returns its exact value; the
  gradient of a step becomes the identity (the straight-through estimator), and the median's
  own gradient, which reaches one element of each window, gets that of the mean over the same
  dimension added (a median filter's sparse gradient spread over its window: on the benchmark's
  median-filtered MNIST CNN this beats both the median's gradient and the mean's alone).
- declared modules: submodules named in ``bpda_modules`` whose output has the input's shape are
  treated as the identity in the backward pass, for preprocessing that leaves torch
  (numpy, PIL, an external codec) and so has no gradient at all.

Forward values are bit-identical to the model's (``s - s.detach()`` is an exact zero), so every adversarial the cascade keeps is still re-checked on the real outputs.
A final ``softmax`` is also recorded, so that a model returning probabilities is attacked
through ``log_softmax`` of its input: the same log-probabilities without the underflow to 0
that flattens the logarithm of a cold softmax.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ...errors import InvalidInputError
from .apgd import loss_and_grad
from .cascade import CountedView
from .losses import margin

BPDA_MODES = ("auto", "on", "off")

_STEP = {
    torch.round: "round",
    torch.Tensor.round: "round",
    torch.floor: "floor",
    torch.Tensor.floor: "floor",
    torch.ceil: "ceil",
    torch.Tensor.ceil: "ceil",
    torch.trunc: "trunc",
    torch.Tensor.trunc: "trunc",
    torch.fix: "trunc",
    torch.Tensor.fix: "trunc",
    torch.sign: "sign",
    torch.Tensor.sign: "sign",
}
_STEP_INPLACE = {
    torch.Tensor.round_: "round",
    torch.Tensor.floor_: "floor",
    torch.Tensor.ceil_: "ceil",
    torch.Tensor.trunc_: "trunc",
    torch.Tensor.fix_: "trunc",
    torch.Tensor.sign_: "sign",
}
_MEDIAN = {
    torch.median: "median",
    torch.Tensor.median: "median",
    torch.nanmedian: "median",
    torch.Tensor.nanmedian: "median",
}
_SOFTMAX = {torch.softmax, torch.Tensor.softmax, F.softmax}


def _through(value: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """``value`` in the forward pass, the gradient of ``surrogate`` in the backward pass."""
    return value.detach() + _zero_with_grad(surrogate)


def _zero_with_grad(surrogate: torch.Tensor) -> torch.Tensor:
    """Exactly zero, with the gradient of ``surrogate``."""
    return surrogate - surrogate.detach()


def _grad_input(args: tuple) -> torch.Tensor | None:
    first = args[0] if args else None
    return first if isinstance(first, torch.Tensor) and first.requires_grad and first.is_floating_point() else None


class Surrogates(TorchFunctionMode):
    """Replaces the backward pass of non-differentiable operations on tensors that need a gradient;
    ``seen`` collects their names. With ``replace=False`` it only records them."""

    def __init__(self, replace: bool = True) -> None:
        super().__init__()
        self.replace = replace
        self.seen: set[str] = set()
        self.softmax: tuple[torch.Tensor, torch.Tensor, int] | None = None

    def __torch_function__(self, func: Callable, types: tuple, args: tuple = (), kwargs: dict | None = None):
        kwargs = kwargs or {}
        if func in _SOFTMAX:
            out = func(*args, **kwargs)
            dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
            if isinstance(dim, int):
                self.softmax = (out, args[0], dim)
            return out
        x = _grad_input(args)
        name = _STEP.get(func) or _STEP_INPLACE.get(func) or _MEDIAN.get(func)
        if x is None or name is None:
            return func(*args, **kwargs)
        self.seen.add(name)
        if not self.replace:
            return func(*args, **kwargs)
        if func in _STEP:
            return _through(func(*args, **kwargs), x)
        if func in _STEP_INPLACE:
            value = func(x.detach().clone(), *args[1:], **kwargs)
            return x.copy_(_through(value, x))
        return self._median(func, x, args, kwargs)

    @staticmethod
    def _median(func: Callable, x: torch.Tensor, args: tuple, kwargs: dict):
        """The median with the mean's gradient added to its own (which reaches one element only)."""
        out = func(*args, **kwargs)
        dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
        if dim is None:
            return out + _zero_with_grad(x.mean())
        keepdim = bool(kwargs.get("keepdim", args[2] if len(args) > 2 else False))
        return type(out)((out.values + _zero_with_grad(x.mean(dim, keepdim=keepdim)), out.indices))

    def log_probabilities(self, out: torch.Tensor) -> torch.Tensor | None:
        """``log_softmax`` of the softmax input if ``out`` is the recorded softmax's output, or its
        leading rows (the model wrapper returns the first rows of a padded small batch)."""
        if self.softmax is None:
            return None
        recorded, source, dim = self.softmax
        leading_rows = out is recorded or (
            out.data_ptr() == recorded.data_ptr() and out.shape[1:] == recorded.shape[1:] and len(out) <= len(recorded)
        )
        if not leading_rows:
            return None
        return F.log_softmax(source.to(out.dtype), dim=dim)[: len(out)]


def find_modules(model: nn.Module, names: Sequence[str]) -> list[nn.Module]:
    """The declared preprocessing submodules, by name in the model or in its wrapped ``net``."""
    found = []
    roots = [model] + ([model.net] if isinstance(getattr(model, "net", None), nn.Module) else [])
    for name in names:
        module = next((m for root in roots for m in [_submodule(root, name)] if m is not None), None)
        if module is None:
            raise InvalidInputError(
                f"checks.adversarial: bpda_modules names {name!r}, which is no submodule of the model"
            )
        found.append(module)
    return found


def _submodule(root: nn.Module, name: str) -> nn.Module | None:
    try:
        return root.get_submodule(name)
    except AttributeError:
        return None


def _identity_backward(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    x = inputs[0] if inputs else None
    same = (
        isinstance(x, torch.Tensor)
        and isinstance(output, torch.Tensor)
        and x.shape == output.shape
        and x.dtype == output.dtype
    )
    if not same:
        raise InvalidInputError(
            f"checks.adversarial: bpda module {type(module).__name__} must map a tensor to one of the same shape "
            f"and dtype to be treated as the identity, got {getattr(x, 'shape', None)} -> {getattr(output, 'shape', None)}"
        )
    return _through(output, x)


class SurrogateView(CountedView):
    """The model as gradient attacks see it under BPDA: exact outputs, surrogate gradients."""

    def __init__(self, model: nn.Module, probabilities: bool = False, modules: Sequence[nn.Module] = ()) -> None:
        super().__init__(model, probabilities)
        self.modules_ = list(modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forward_images += len(x)
        if torch.is_grad_enabled() and x.requires_grad:
            self.backward_images += len(x)
        hooks = [m.register_forward_hook(_identity_backward) for m in self.modules_]
        try:
            with Surrogates() as mode:
                out = self.model(x)
        finally:
            for hook in hooks:
                hook.remove()
        if not self.probabilities:
            return out
        logs = mode.log_probabilities(out)
        return logs if logs is not None else out.clamp_min(1e-30).log()


def nondifferentiable_ops(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of the intercepted non-differentiable operations the model applies on its input's path
    (parameters are frozen meanwhile, so rounding of weights, as in quantisation-aware nets, does not count)."""
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        for p in params:
            p.requires_grad_(False)
        with Surrogates(replace=False) as mode, torch.enable_grad():
            model(x.detach().requires_grad_(True))
    finally:
        for p in params:
            p.requires_grad_(True)
    return sorted(mode.seen)


@dataclass(frozen=True)
class MaskingResponse:
    """What the cascade changed because of gradient masking, decided before it runs.

    ``ops``: non-differentiable operations seen on the input's path; ``zero_gradient``: share of
    correctly classified inputs (at most one batch) whose margin gradient is exactly zero;
    ``bpda``: gradient attacks ran through ``SurrogateView``; ``square_everywhere``: the
    gradient-free attacks ran on every input still robust, not only on survivors of the largest epsilon.
    """

    ops: tuple[str, ...] = ()
    zero_gradient: float = 0.0
    bpda: bool = False
    square_everywhere: bool = False


def check_bpda(mode: str, modules: Sequence[str]) -> None:
    """The ``bpda`` mode is known, and declared modules do not contradict ``"off"``."""
    if mode not in BPDA_MODES:
        raise InvalidInputError(f"checks.adversarial: bpda must be one of {', '.join(BPDA_MODES)}, got {mode!r}")
    if mode == "off" and len(modules):
        raise InvalidInputError(
            f"checks.adversarial: bpda = 'off' contradicts bpda_modules {list(modules)}; drop one of them"
        )


def respond(
    model: nn.Module,
    view: CountedView,
    x: torch.Tensor,
    y: torch.Tensor,
    correct: torch.Tensor,
    mode: str,
    declared: bool,
    threshold: float,
    batch_size: int,
) -> MaskingResponse:
    """Turn BPDA and the full gradient-free stage on when ``mode`` is "on", modules are declared,
    non-differentiable operations are seen, or the margin gradient is zero on more than ``threshold``."""
    if mode == "off" or not len(x):
        return MaskingResponse()
    ops = tuple(nondifferentiable_ops(model, x[:2]))
    todo = torch.nonzero(correct.to(x.device)).flatten()[:batch_size]
    zero = 0.0
    if len(todo):
        _, _, grad = loss_and_grad(view, x[todo], y[todo], lambda z, t: -margin(z, t))
        zero = float((grad.flatten(1).abs().amax(1) == 0).float().mean())
    flagged = mode == "on" or declared or bool(ops) or zero > threshold
    return MaskingResponse(ops, zero, flagged, flagged)


__all__ = [
    "BPDA_MODES",
    "MaskingResponse",
    "SurrogateView",
    "Surrogates",
    "find_modules",
    "nondifferentiable_ops",
    "respond",
]

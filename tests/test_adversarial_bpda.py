"""BPDA and the full Square stage against gradient masking: exact forward values, useful surrogate
gradients, diagnostics that fire on every model of the masking zoo, and points the plain cascade misses."""

import numpy as np
import pandas as pd
import pytest
import torch
from misleading_models import ColdSoftmax, FirstClasses, JpegInput, MedianFilter, QuantisedInput, wrap
from torch import nn

from robustcnn.checks import CheckContext
from robustcnn.checks.imperceptible_perturbations.adversarial import AdversarialCheck
from robustcnn.errors import InvalidInputError
from robustcnn.methods.perturbation import WARNING_PREFIX, AttackSettings, evaluate, margin
from robustcnn.methods.perturbation.apgd import loss_and_grad
from robustcnn.methods.perturbation.bpda import SurrogateView, nondifferentiable_ops
from robustcnn.methods.perturbation.cascade import CountedView

FAST = AttackSettings(
    fmn_steps=10, apgd_steps=10, apgd_targets=2, apgd_target_steps=5, apgd_dlr_steps=10, square_queries=100
)
QUICK = {
    "fmn_steps": 10,
    "ddn_steps": 10,
    "apgd_steps": 5,
    "apgd_targets": 1,
    "apgd_target_steps": 5,
    "apgd_dlr_steps": 5,
    "square_queries": 50,
    "unbounded_images": 4,
}
ZOO = {
    "quantised": (lambda net: QuantisedInput(net, 8), ["round"]),
    "rounded-8bit": (lambda net: QuantisedInput(net, 255), ["round"]),
    "jpeg": (JpegInput, ["round", "trunc"]),
    "median": (MedianFilter, ["median"]),
    "cold-softmax": (ColdSoftmax, []),
}


class NumpyRounding(nn.Module):
    """Preprocessing outside torch: no gradient path at all, only a declared module can be bridged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.round(x.detach().numpy() * 8) / 8).to(x.dtype)


class Pipeline(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.prep, self.net = NumpyRounding(), net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.prep(x))


@pytest.fixture(scope="module")
def batch(mnist):
    return mnist.test.x[:12], mnist.test.y[:12]


def _margin_grad(view, x, y):
    return loss_and_grad(view, x, y, lambda z, t: -margin(z, t))[2].flatten(1).abs().amax(1)


@pytest.mark.parametrize("name", list(ZOO))
def test_surrogates_keep_the_forward_pass_and_restore_a_gradient(demo_model, batch, name):
    make, ops = ZOO[name]
    model = wrap(make(demo_model.net), sample=batch[0][:2])
    x, y = batch
    assert nondifferentiable_ops(model, x[:2]) == ops
    plain, bpda = CountedView(model, model.outputs_probabilities), SurrogateView(model, model.outputs_probabilities)
    with torch.no_grad():
        a, b = plain(x), bpda(x)
    assert torch.equal(a.argmax(1), b.argmax(1))
    if not model.outputs_probabilities:
        assert torch.equal(a, b)
    assert (_margin_grad(bpda, x, y) > 0).all()
    if name != "median":
        assert (_margin_grad(plain, x, y) == 0).float().mean() > 0.5


def test_the_plain_model_has_no_surrogates(demo_model, batch):
    assert nondifferentiable_ops(demo_model, batch[0][:2]) == []
    res = evaluate(demo_model, *batch, norms=["linf"], eps=[0.0, 0.1], attacks=["apgd-ce"], settings=FAST)
    assert not res.masking.bpda and not res.masking.square_everywhere


@pytest.mark.parametrize("name,attack", [("quantised", "apgd-ce"), ("jpeg", "apgd-ce"), ("cold-softmax", "apgd-dlr")])
def test_bpda_breaks_what_plain_gradients_cannot(demo_model, batch, name, attack):
    model = wrap(ZOO[name][0](demo_model.net), sample=batch[0][:2])
    grid = {"linf": [0.0, 0.3]}
    off = evaluate(model, *batch, norms=["linf"], eps=grid, attacks=[attack], settings=FAST, bpda="off")
    auto = evaluate(model, *batch, norms=["linf"], eps=grid, attacks=[attack], settings=FAST)
    assert auto.masking.bpda and not off.masking.bpda
    assert off.robust_accuracy("linf")[0.3] >= 0.5
    assert auto.robust_accuracy("linf")[0.3] <= 0.1
    broken = torch.isfinite(auto.min_norm("linf")) & auto.correct
    adv = auto.norms["linf"].adversarial[broken]
    assert (model(adv).argmax(1) != batch[1][broken]).all()  # verified on the real model


def test_declared_modules_bridge_preprocessing_outside_torch(demo_model, batch):
    model = wrap(Pipeline(demo_model.net), sample=batch[0][:2])
    x, y = batch
    assert nondifferentiable_ops(model, x[:2]) == []
    assert (_margin_grad(CountedView(model), x, y) == 0).all()
    res = evaluate(
        model, x, y, norms=["linf"], eps=[0.0, 0.3], attacks=["apgd-ce"], settings=FAST, bpda_modules=["prep"]
    )
    assert res.masking.bpda and res.robust_accuracy("linf")[0.3] <= 0.1
    with pytest.raises(InvalidInputError, match="no submodule"):
        evaluate(
            model, x, y, norms=["linf"], eps=[0.0, 0.3], attacks=["apgd-ce"], settings=FAST, bpda_modules=["missing"]
        )
    with pytest.raises(InvalidInputError, match="no submodule"):
        AdversarialCheck.from_options({"bpda_modules": ["missing"]}).preflight(model, None)
    classifier = wrap(FirstClasses(demo_model.net, 10), sample=x[:2])
    with pytest.raises(InvalidInputError, match="same shape"):
        evaluate(
            classifier, x, y, norms=["linf"], eps=[0.0, 0.3], attacks=["apgd-ce"], settings=FAST, bpda_modules=["net"]
        )


def test_masking_sends_square_to_every_robust_input(demo_model, batch):
    grid, kwargs = (
        {"linf": [0.0, 0.02, 0.3]},
        {"attacks": ["apgd-ce", "square"], "survivor_attacks": ["square"], "settings": FAST},
    )
    off = evaluate(demo_model, *batch, norms=["linf"], eps=grid, bpda="off", **kwargs)
    on = evaluate(demo_model, *batch, norms=["linf"], eps=grid, bpda="on", **kwargs)
    square = {
        r: next(c for c in res.norms["linf"].costs if c.attack == "square").images
        for r, res in (("off", off), ("on", on))
    }
    assert on.masking.square_everywhere and not off.masking.square_everywhere
    assert square["off"] <= 2 < square["on"]  # off: only inputs surviving 0.3; on: every input still robust at 0.02


@pytest.mark.parametrize("name", list(ZOO))
def test_the_check_flags_every_model_of_the_zoo(demo_model, mnist_audit, name):
    model = wrap(ZOO[name][0](demo_model.net), sample=mnist_audit.eval.x[:2])
    data = mnist_audit.with_eval(mnist_audit.eval.subset(list(range(8))))
    check = AdversarialCheck.from_options({**QUICK, "norms": ["linf"], "eps_linf": [0.0, 0.3]})
    ctx = CheckContext(seed=0)
    out = check.run(model, data, ctx)
    rows = pd.DataFrame(out.rows)
    assert rows[rows["metric"] == "masking_bpda"]["value"].iloc[0] == 1.0
    assert rows[rows["metric"] == "masking_square_everywhere"]["value"].iloc[0] == 1.0
    assert "found_by_bpda" in set(rows["metric"])
    assert any(w.startswith(WARNING_PREFIX) for w in ctx.warnings)
    if ZOO[name][1]:
        assert any(", ".join(ZOO[name][1]) in w for w in ctx.warnings)


@pytest.mark.parametrize(
    "options,fragment",
    [
        ({"bpda": "sometimes"}, "option 'bpda' must be one of 'auto', 'on', 'off', got 'sometimes'"),
        ({"bpda": "off", "bpda_modules": ["prep"]}, "option 'bpda_modules' must be empty when bpda is 'off'"),
    ],
)
def test_bpda_options_are_validated(options, fragment):
    with pytest.raises(InvalidInputError, match=fragment):
        AdversarialCheck.from_options(options)


class RoundedWeights(nn.Module):
    """A quantisation-aware layer: rounds its weights, never its input; no masking to respond to."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.scale = net, nn.Parameter(torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * torch.round(self.scale * 4) / 4


def test_rounding_parameters_is_no_masking(demo_model, batch):
    model = wrap(RoundedWeights(demo_model.net), sample=batch[0][:2])
    for p in model.parameters():  # as a module handed in through the API has them
        p.requires_grad_(True)
    assert nondifferentiable_ops(model, batch[0][:2]) == []
    assert all(p.requires_grad for p in model.parameters())  # left as they were
    for p in model.parameters():
        p.requires_grad_(False)  # as robustcnn loads them (the session's demo model is shared)

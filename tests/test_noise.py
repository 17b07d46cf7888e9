"""noise: predictions on pure-noise images (Shafaei, Schmidt & Little 2018)."""

import numpy as np
import pytest
import torch

from robustcnn.checks import CheckContext
from robustcnn.checks.natural_shifts.noise import NoiseCheck, noise_images
from robustcnn.errors import InvalidInputError
from robustcnn.models import AuditedModel
from robustcnn.results.schema import tidy


def test_noise_images_have_the_documented_distributions():
    gen = torch.Generator().manual_seed(0)
    g = noise_images("gaussian", 400, (1, 28, 28), 0.5, 0.25, gen)
    u = noise_images("uniform", 400, (3, 8, 8), 0.5, 0.25, gen)
    assert g.shape == (400, 1, 28, 28) and u.shape == (400, 3, 8, 8)
    assert g.min() == 0 and g.max() == 1  # clipped to the pixel range
    inside = g[(g > 0) & (g < 1)]
    assert abs(g.mean().item() - 0.5) < 0.005 and 0.22 < g.std().item() < 0.25 and len(inside) > 0.9 * g.numel()
    assert abs(u.mean().item() - 0.5) < 0.01 and abs(u.var().item() - 1 / 12) < 0.005


@pytest.fixture(scope="module")
def run(demo_model, mnist_audit):
    ctx = CheckContext(seed=0)
    out = NoiseCheck.from_options({"n": 300}).run(demo_model, mnist_audit, ctx)
    return out, tidy(out.rows, "demo", "noise")


def test_rows_match_a_direct_computation(run, demo_model, mnist_audit):
    out, table = run
    for kind in ("gaussian", "uniform"):
        x = noise_images(kind, 300, (1, 28, 28), 0.5, 0.25, CheckContext(seed=0).generator("noise", kind))
        probs = demo_model.logits(x).double().softmax(1)
        top, pred = probs.max(1)
        part = table[table.ood == kind]
        shares = part[part.metric == "predicted_share"].set_index("class")["value"]
        expected = np.bincount(pred.numpy(), minlength=10) / 300
        assert np.allclose(shares.values, expected) and shares.sum() == pytest.approx(1.0)
        most = part[part.metric == "top_class_share"]
        assert most["class"].item() == str(int(np.argmax(expected))) and most["value"].item() == expected.max()
        assert part[part.metric == "mean_top_probability"]["value"].item() == pytest.approx(top.mean().item())
        q = part[part.metric == "top_probability_quantile"].set_index("quantile")["value"]
        assert q[0.5] == pytest.approx(float(np.quantile(top.numpy(), 0.5))) and q.is_monotonic_increasing
        above = part[part.metric == "share_above"].set_index("threshold")["value"]
        assert above[0.9] == pytest.approx((top > 0.9).double().mean().item())
        assert above[0.99] == pytest.approx((top > 0.99).double().mean().item())
    assert out.figures["noise"][:4] == b"\x89PNG"


def test_headline_pools_both_noise_kinds(run):
    _, table = run
    label, share = (h := NoiseCheck().headline(table)).label, h.value
    above = table[(table.metric == "share_above") & (table.threshold == 0.99)]["value"]
    assert "0.99" in label and share == pytest.approx(above.mean())


def test_probability_model_gives_the_same_rows_and_warns(demo_model, mnist_audit, run):
    softmax_model = AuditedModel(torch.nn.Sequential(demo_model.net, torch.nn.Softmax(dim=1)), 10, 1, (28, 28))
    softmax_model.validate(mnist_audit.eval.x[:2])
    ctx = CheckContext(seed=0)
    table = tidy(NoiseCheck.from_options({"n": 300}).run(softmax_model, mnist_audit, ctx).rows, "demo", "noise")
    assert any("probabilities" in w for w in ctx.warnings)
    assert np.allclose(table["value"], run[1]["value"], atol=1e-5, equal_nan=True)


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"n": 0}, "check 'noise': option 'n' must be an integer >= 1 \\(images\\), got 0"),
        ({"kinds": ["pink"]}, "option 'kinds' must be a non-empty list of names from 'gaussian', 'uniform'"),
        ({"std": -1}, "option 'std' must be a number > 0"),
        ({"thresholds": [2]}, r"option 'thresholds' must be a list of numbers in \(0, 1\)"),
        ({"n": "many"}, "option 'n' must be an integer"),
    ],
)
def test_bad_input_raises_one_clear_line(options, fragment):
    with pytest.raises(InvalidInputError, match=fragment):
        NoiseCheck.from_options(options)


def test_model_with_other_class_count_is_rejected(mnist_audit):
    model = AuditedModel(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 5)), 5, 1, (28, 28))
    with pytest.raises(InvalidInputError, match="5 outputs"):
        NoiseCheck.from_options({"n": 10}).run(model, mnist_audit, CheckContext())

"""The ``spatial`` check on the demo MNIST CNN: the transforms, early-stopped grid search against an
exhaustive one, jaggedness against a direct computation, bad options."""

from __future__ import annotations

import pytest
import torch

from robustcnn.checks import CheckContext, get_check
from robustcnn.checks.natural_shifts.spatial import CURVES, SpatialCheck
from robustcnn.errors import InvalidInputError
from robustcnn.methods.shifts.spatial import diagonal_shift, rotate_translate
from robustcnn.results.schema import tidy

OPTIONS = {"n_angles": 5, "n_translations": 3, "random_trials": 4, "round_size": 64, "max_shift": 3}


@pytest.fixture(scope="module")
def small_audit(mnist_audit):
    return mnist_audit.with_eval(mnist_audit.eval.subset(list(range(0, 200, 5))))


@pytest.fixture(scope="module")
def result(demo_model, small_audit):
    check = SpatialCheck.from_options(OPTIONS)
    return check, check.run(demo_model, small_audit, CheckContext(seed=0, batch_size=64))


def test_transforms_are_exact_on_the_pixel_grid():
    x = torch.rand(3, 2, 9, 9)
    turned = rotate_translate(x, torch.tensor([[90.0, 0, 0], [0, 2, -1], [0, 0, 0]]))
    quarter = torch.rot90(x[0], k=1, dims=(1, 2))
    assert torch.allclose(turned[0], quarter, atol=1e-5) or torch.allclose(
        turned[0], torch.rot90(x[0], k=-1, dims=(1, 2)), atol=1e-5
    )
    expected = torch.zeros_like(x[1])
    expected[:, :8, 2:] = x[1, :, 1:, :7]  # dx = 2 moves content right, dy = -1 moves it up
    assert torch.allclose(turned[1], expected, atol=1e-5)
    assert torch.allclose(turned[2], x[2], atol=1e-6)
    shifted = diagonal_shift(x, 2)
    assert torch.equal(shifted[..., 2:, 2:], x[..., :-2, :-2]) and shifted[..., :2, :].abs().sum() == 0


def test_grid_search_equals_exhaustive(demo_model, small_audit, result):
    check, out = result
    s = out.samples
    x, y = small_audit.eval.x, small_audit.eval.y
    grids = check.grids(28, 28)
    every = torch.cat([torch.zeros(1, 3), grids["translation"], grids["rotation"], grids["rest"]])
    assert len(every) == 5 * 3 * 3  # every grid transform once, the identity included
    ok = torch.ones(len(x), dtype=torch.bool)
    for p in every:
        ok &= demo_model.logits(rotate_translate(x, p.expand(len(x), 3))).argmax(1) == y
    assert torch.equal(torch.tensor(s["grid_correct"].to_numpy()), ok)
    table = tidy(out.rows, "demo", "spatial")
    acc = table[table.metric == "accuracy"].set_index("transform").value
    assert acc["grid"] == pytest.approx(float(ok.float().mean()))
    assert acc["grid"] <= min(acc["rotation"], acc["translation"], acc["random-4"]) <= acc["none"]
    head = check.headline(table)
    assert (head.label, head.value, head.better) == ("worst-of-grid accuracy", acc["grid"], "higher")
    # the recorded breaking transform does break the image
    broken = s[s.clean_correct & ~s.grid_correct]
    assert len(broken)
    idx = torch.tensor(broken.index.to_numpy())
    params = torch.tensor(broken[["break_angle", "break_dx", "break_dy"]].to_numpy(), dtype=torch.float32)
    pred = demo_model.logits(rotate_translate(x[idx], params)).argmax(1)
    assert bool((pred != y[idx]).all()) and torch.equal(pred, torch.tensor(broken.break_pred.to_numpy()))
    # early stop: fewer model evaluations than the exhaustive search
    assert s.grid_evals.sum() < len(x) * (len(every) - 1)
    assert set(out.figures) == {"jaggedness", "grid-examples"}


def test_jaggedness_matches_direct_computation(demo_model, small_audit, result):
    _, out = result
    x = small_audit.eval.x
    logits = [demo_model.logits(diagonal_shift(x, k)) for k in range(-3, 4)]
    top = torch.stack([z.argmax(1) for z in logits], dim=1)
    changes = (top[:, 1:] != top[:, :-1]).sum()
    table = tidy(out.rows, "demo", "spatial")
    overall = table[(table.metric == "top1_change") & table["class"].isna()]
    assert int(overall.n.iloc[0]) == 6 * len(x)
    assert float(overall.value.iloc[0]) == pytest.approx(float(changes) / (6 * len(x)))
    k0 = logits[3].argmax(1, keepdim=True)
    p = torch.stack([z.softmax(1).gather(1, k0).squeeze(1) for z in logits], dim=1)
    mac = table[(table.metric == "mean_abs_change") & table["class"].isna()]
    assert float(mac.value.iloc[0]) == pytest.approx(float((p[:, 1:] - p[:, :-1]).abs().mean()), rel=1e-5)
    per_class = table[(table.metric == "top1_change") & table["class"].notna()]
    assert len(per_class) == 10 and int(per_class.n.sum()) == 6 * len(x)
    part = SpatialCheck.from_options({**OPTIONS, "grid": False}).measure(demo_model, small_audit.eval, CheckContext())
    assert torch.allclose(part.artifacts[CURVES], p)


def test_seeded(demo_model, small_audit, result):
    _, out = result
    again = SpatialCheck.from_options(OPTIONS).run(demo_model, small_audit, CheckContext(seed=0, batch_size=64))
    assert out.samples.equals(again.samples)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"n_angles": 0}, "option 'n_angles' must be an integer >= 1, got 0"),
        ({"n_translations": 0}, "option 'n_translations' must be an integer >= 1"),
        ({"jaggedness": False, "grid": False}, "option 'grid' must be true when jaggedness is false"),
        ({"max_shift": 0}, r"option 'max_shift' must be an integer >= 1 \(pixels\)"),
        ({"max_translation": -1}, "option 'max_translation' must be a number >= 0"),
        ({"max_angle": 400}, r"option 'max_angle' must be a number in \[0, 180\] \(degrees\), got 400"),
        ({"random_trials": -1}, "option 'random_trials' must be an integer >= 0"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(InvalidInputError, match=message):
        get_check("spatial").from_options(options)

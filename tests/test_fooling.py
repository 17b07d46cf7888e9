"""fooling-gradient: gradient fooling images and regularised class prototypes (Nguyen et al. 2015)."""

import math

import numpy as np
import pytest
import torch

from robustcnn.checks import CheckContext
from robustcnn.checks.fooling_images.fooling_gradient import FoolingGradientCheck
from robustcnn.errors import InvalidInputError
from robustcnn.methods.fooling.gradient import gradient_fooling, median_cost, resolve_classes, total_variation
from robustcnn.models import AuditedModel
from robustcnn.results.schema import tidy

QUICK = {"classes": [1, "4", 8], "steps": 60, "prototype_steps": 25}


@pytest.fixture(scope="module")
def quick_run(demo_model, mnist_audit):
    ctx = CheckContext(seed=0)
    out = FoolingGradientCheck.from_options(QUICK).run(demo_model, mnist_audit, ctx)
    return out, tidy(out.rows, "demo", "fooling-gradient"), ctx


def test_fooling_images_reach_99_99_and_reevaluate_to_the_reported_confidence(quick_run, demo_model):
    out, table, _ = quick_run
    images = out.artifacts["fooling-gradient/images"]
    assert images.shape == (3, 1, 28, 28) and images.min() >= 0 and images.max() <= 1
    best = table[(table.metric == "best_confidence") & (table.variant == "fooling")].set_index("class")["value"]
    assert list(best.index) == ["1", "4", "8"]
    probs = demo_model.logits(images).double().softmax(1)
    assert probs.argmax(1).tolist() == [1, 4, 8]
    assert torch.allclose(probs[torch.arange(3), torch.tensor([1, 4, 8])], torch.tensor(best.values), atol=1e-6)
    assert (best >= 0.9999).all()
    fooled = table[(table.metric == "classes_fooled") & (table.variant == "fooling")]
    assert fooled.set_index("threshold")["value"].to_dict() == {0.99: 1.0, 0.999: 1.0, 0.9999: 1.0}


def test_steps_and_evaluations_are_consistent(quick_run):
    _, table, _ = quick_run
    fool = table[table.variant == "fooling"]
    steps = fool[fool.metric == "steps_to_confidence"].pivot(index="class", columns="threshold", values="value")
    evals = fool[fool.metric == "evaluations_to_confidence"].pivot(index="class", columns="threshold", values="value")
    assert (steps.diff(axis=1).iloc[:, 1:] >= 0).all().all()  # higher thresholds take no fewer steps
    assert ((steps >= 0) & (steps <= QUICK["steps"])).all().all()
    assert (evals == steps + 1).all().all()  # one forward per step plus the starting image


def test_prototypes_are_smoother_than_fooling_images(quick_run, demo_model, mnist_audit):
    out, table, _ = quick_run
    assert set(out.figures) == {"fooling-gradient-fooling", "fooling-gradient-prototype", "fooling-gradient-contrast"}
    assert all(png[:4] == b"\x89PNG" for png in out.figures.values())
    protos = table[(table.metric == "best_confidence") & (table.variant == "prototype")]
    assert len(protos) == 3 and (protos["value"] > 0.5).all()
    # only the fooling images are an artifact: rerun the prototype variant to get its images
    check = FoolingGradientCheck.from_options(QUICK)
    centre = mnist_audit.eval.x.mean(dim=(0, 2, 3))
    proto = gradient_fooling(
        demo_model,
        [1, 4, 8],
        (1, 28, 28),
        check.variant("prototype"),
        [0.99],
        1.0,
        torch.Generator().manual_seed(0),
        centre,
    )
    assert total_variation(proto.images).mean() < 0.5 * total_variation(out.artifacts["fooling-gradient/images"]).mean()


def test_unreached_thresholds_are_nan_and_marked(demo_model, mnist_audit):
    check = FoolingGradientCheck.from_options({"classes": [1, 7], "steps": 1, "variants": ["fooling"]})
    table = tidy(check.run(demo_model, mnist_audit, CheckContext()).rows, "demo", "fooling-gradient")
    rows = table[table.metric.isin(["steps_to_confidence", "evaluations_to_confidence"])]
    unreached = rows[rows.status == "unreached"]
    assert len(unreached) > 0
    assert unreached["value"].isna().all() and rows[rows.status == "reached"]["value"].notna().all()
    fooled = table[(table.metric == "classes_fooled") & (table.threshold == 0.9999)]
    reached = rows[(rows.metric == "steps_to_confidence") & (rows.threshold == 0.9999) & (rows.status == "reached")]
    assert fooled["value"].iloc[0] == len(reached) / 2


def test_same_seed_same_images_other_seed_other_images(demo_model, mnist_audit):
    opts = {"classes": [3], "steps": 5, "variants": ["fooling"]}
    a = FoolingGradientCheck.from_options(opts).run(demo_model, mnist_audit, CheckContext(seed=1))
    b = FoolingGradientCheck.from_options(opts).run(demo_model, mnist_audit, CheckContext(seed=1))
    c = FoolingGradientCheck.from_options(opts).run(demo_model, mnist_audit, CheckContext(seed=2))
    key = "fooling-gradient/images"
    assert torch.equal(a.artifacts[key], b.artifacts[key])
    assert not torch.equal(a.artifacts[key], c.artifacts[key])


def test_probability_outputs_are_logged_safely_with_a_warning(demo_model, mnist_audit):
    softmax_model = AuditedModel(torch.nn.Sequential(demo_model.net, torch.nn.Softmax(dim=1)), 10, 1, (28, 28))
    softmax_model.validate(mnist_audit.eval.x[:2])
    assert softmax_model.outputs_probabilities
    ctx = CheckContext()
    out = FoolingGradientCheck.from_options({"classes": [2], "steps": 60, "variants": ["fooling"]}).run(
        softmax_model, mnist_audit, ctx
    )
    assert any("probabilities" in w for w in ctx.warnings)
    best = [r["value"] for r in out.rows if r["metric"] == "best_confidence"]
    assert best[0] >= 0.9999 and all(math.isfinite(v) for v in best)


def test_headline_is_the_median_steps_to_the_highest_threshold(quick_run):
    _, table, _ = quick_run
    head = FoolingGradientCheck().headline(table)
    steps = table[(table.metric == "steps_to_confidence") & (table.variant == "fooling") & (table.threshold == 0.9999)]
    assert "99.99%" in head.label and head.better == "higher" and head.n == 3
    assert head.value == steps["value"].median() and (head.ci_low, head.ci_high) == (
        steps["value"].min(),
        steps["value"].max(),
    )
    assert head.where == {"metric": "median_steps_to_confidence", "variant": "fooling", "threshold": 0.9999}


def test_median_cost_is_censored_when_most_targets_are_unreached():
    reached = median_cost(np.array([4.0, 1.0, math.inf]), "median_steps_to_confidence", threshold=0.99)
    assert (reached["value"], reached["n"], reached["status"]) == (4.0, 3, "reached")
    assert (reached["ci_low"], reached["ci_high"]) == (1.0, math.inf)
    censored = median_cost(np.array([2.0, math.inf, math.inf]), "median_steps_to_confidence")
    assert math.isinf(censored["value"]) and censored["status"] == "censored"


def test_headline_ranks_a_weak_the_demo_and_an_adversarially_trained_model(demo_model, mnist_audit, mnist):
    """Every class of the weak and the demo model reaches 99.99%, so the share of classes fooled cannot tell them
    apart; the steps it takes order them, and the adversarially trained model is not fooled within the budget."""
    from reference_models import three_models

    heads, fooled = {}, {}
    for name, model in three_models(mnist, demo_model, mnist_audit.eval.x[:2]).items():
        check = FoolingGradientCheck.from_options({"variants": ["fooling"], "steps": 60})
        table = tidy(check.run(model, mnist_audit, CheckContext(seed=0)).rows, name, check.name)
        heads[name] = check.headline(table)
        fooled[name] = table[(table.metric == "classes_fooled") & (table.threshold == 0.9999)]["value"].item()
    assert fooled["weak"] == fooled["demo"] == 1.0
    weak, demo, adversarial = heads["weak"], heads["demo"], heads["adversarial"]
    assert weak.value < demo.value < adversarial.value and math.isfinite(demo.value)
    assert demo.ci_high < adversarial.ci_low and "censored" in adversarial.label


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"classes": [10]}, "out of range"),
        ({"classes": [-1]}, "out of range"),
        ({"classes": ["eleven"]}, "unknown class"),
        ({"steps": 0}, "option 'steps' must be an integer >= 1"),
        ({"variants": ["dream"]}, "option 'variants' must be a non-empty list of names from 'fooling', 'prototype'"),
        ({"thresholds": [1.5]}, r"option 'thresholds' must be a non-empty list of numbers in \(0, 1\)"),
        ({"stop_at": 0}, r"option 'stop_at' must be a number in \(0, 1\]"),
        ({"step": 3}, "no option"),
    ],
)
def test_bad_input_raises_one_clear_line(options, fragment, demo_model, mnist_audit):
    with pytest.raises(InvalidInputError, match=fragment) as err:
        FoolingGradientCheck.from_options(options).run(demo_model, mnist_audit, CheckContext())
    assert "\n" not in str(err.value)


def test_classes_resolve_by_name_first_then_index():
    assert resolve_classes(["b", 0, "2"], ["a", "b", "c"], "x") == [1, 0, 2]
    assert resolve_classes(["5", 0], ["3", "5"], "x") == [1, 0]  # a name wins over a digit string
    assert resolve_classes([], ["a", "b"], "x") == [0, 1]

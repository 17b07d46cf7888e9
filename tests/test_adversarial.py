"""The adversarial check and its public API: curves from the cascade, honest on models built to
mislead gradient attacks, shardable, and clear errors on bad options."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from misleading_models import FirstClasses, QuantisedInput, SaturatedSoftmax, SoftmaxOutputs, wrap

from robustcnn.checks import AuditData, CheckContext
from robustcnn.checks.imperceptible_perturbations.adversarial import AdversarialCheck
from robustcnn.errors import InvalidInputError
from robustcnn.methods.perturbation import WARNING_PREFIX, AttackSettings, evaluate

QUICK = {
    "fmn_steps": 20,
    "ddn_steps": 20,
    "apgd_steps": 8,
    "apgd_targets": 2,
    "apgd_target_steps": 5,
    "apgd_dlr_steps": 10,
    "square_queries": 150,
    "unbounded_images": 8,
}
FAST = AttackSettings(
    fmn_steps=20, ddn_steps=20, apgd_steps=8, apgd_targets=2, apgd_target_steps=5, apgd_dlr_steps=10, square_queries=150
)


@pytest.fixture(scope="module")
def small(mnist_audit):
    """40 stratified images (4 per class) of the 200 in mnist_audit."""
    idx = np.concatenate([np.flatnonzero(mnist_audit.eval.y.numpy() == k)[:4] for k in range(10)])
    return mnist_audit.with_eval(mnist_audit.eval.subset(np.sort(idx)))


@pytest.fixture(scope="module")
def quick_run(demo_model, small):
    check = AdversarialCheck.from_options(QUICK)
    ctx = CheckContext(seed=0)
    return check, check.run(demo_model, small, ctx), ctx


def test_public_api_gives_min_norms_and_robust_flags(demo_model, small):
    x, y = small.eval.x[:24], small.eval.y[:24]
    res = evaluate(demo_model, x, y, norms=["linf"], eps={"linf": [0.0, 0.1, 0.3]}, settings=FAST)
    min_norm, robust = res.min_norm("linf"), res.robust("linf")
    assert min_norm.shape == (24,) and robust.shape == (24, 3)
    assert torch.equal(robust, min_norm[:, None] > torch.tensor([0.0, 0.1, 0.3])[None, :] + 1e-6)
    assert torch.equal(robust[:, 0], res.correct)
    acc = list(res.robust_accuracy("linf").values())
    assert acc[0] >= acc[1] >= acc[2] and acc[2] < 0.1
    broken = torch.isfinite(min_norm) & res.correct
    adv = res.norms["linf"].adversarial[broken]
    assert (demo_model.logits(adv).argmax(1) != y[broken]).all()
    assert torch.allclose((adv - x[broken]).flatten(1).abs().amax(1), min_norm[broken], atol=1e-6)


def test_cascade_is_pointwise_no_weaker_than_its_first_attack(demo_model, small):
    x, y = small.eval.x[:24], small.eval.y[:24]
    grid = {"linf": [0.0, 0.05, 0.1, 0.15]}
    alone = evaluate(demo_model, x, y, norms=["linf"], eps=grid, attacks=["fmn"], settings=FAST)
    full = evaluate(demo_model, x, y, norms=["linf"], eps=grid, settings=FAST)
    assert (full.min_norm("linf") <= alone.min_norm("linf")).all()
    assert (full.robust("linf") <= alone.robust("linf")).all()


def test_without_labels_the_models_own_decisions_are_attacked(demo_model, small):
    res = evaluate(demo_model, small.eval.x[:8], None, norms=["l2"], eps=[0.0, 3.0], attacks=["ddn"], settings=FAST)
    assert res.robust_accuracy("l2")[0.0] == 1.0
    assert res.robust_accuracy("l2")[3.0] < 0.5


def test_check_rows_figures_artifacts_and_headline(quick_run, small):
    check, out, ctx = quick_run
    rows = pd.DataFrame(out.rows)
    curve = rows[rows["metric"] == "robust_accuracy"]
    assert set(curve["norm"]) == {"linf", "l2"} and (curve["n"] == 40).all()
    linf = curve[curve["norm"] == "linf"].sort_values("eps")
    assert linf["value"].is_monotonic_decreasing and linf["value"].iloc[-1] <= 0.05
    median = rows[(rows["metric"] == "min_perturbation_median") & (rows["norm"] == "l2")].iloc[0]
    assert 0.5 < median["value"] < 3.0 and median["ci_low"] <= median["value"] <= median["ci_high"]
    assert len(rows[rows["metric"] == "class_robust_accuracy"]) == 10
    costs = rows[rows["metric"] == "attack_forward_images"]
    assert set(costs["attack"]) == {"fmn", "ddn", "apgd-ce", "apgd-t", "apgd-dlr", "square"}
    assert costs[costs["attack"] == "fmn"]["value"].iloc[0] > 0
    assert {"masking_zero_gradient_ce", "masking_blackbox_gain", "masking_unbounded_robust"} <= set(rows["metric"])
    assert not [w for w in ctx.warnings if w.startswith(WARNING_PREFIX)]
    assert set(out.figures) == {"curve", "examples"} and all(png[:4] == b"\x89PNG" for png in out.figures.values())
    examples = out.artifacts["adversarial/examples"]
    assert examples.shape[1:] == (1, 28, 28) and len(examples) == int(out.samples["example"].sum()) > 0
    table = rows.assign(model="demo", check="adversarial")
    label, value = (h := check.headline(table)).label, h.value
    assert label == "median smallest L-inf perturbation that flips a correct prediction" and h.kind == "value"
    assert h.where == {"metric": "min_perturbation_median", "norm": "linf"} and h.better == "higher"
    median = rows[(rows["metric"] == "min_perturbation_median") & (rows["norm"] == "linf")].iloc[0]
    assert (value, h.ci_low, h.ci_high) == (median["value"], median["ci_low"], median["ci_high"])
    # the median is the radius at which robust accuracy falls to half the clean accuracy
    clean = out.samples["correct"].mean()
    mins = out.samples["min_linf"].to_numpy(float)
    assert (mins > value + 1e-6).mean() <= clean / 2 < (mins > value - 1e-6).mean()
    assert {"min_linf", "min_l2", "robust_linf@0.1", "by_l2"} <= set(out.samples.columns)


def test_same_seed_gives_identical_samples(demo_model, small, quick_run):
    sub = small.with_eval(small.eval.subset(list(range(10))))
    check = AdversarialCheck.from_options({**QUICK, "norms": ["linf"]})
    a = check.measure(demo_model, sub.eval, CheckContext(seed=3)).samples
    b = check.measure(demo_model, sub.eval, CheckContext(seed=3)).samples
    pd.testing.assert_frame_equal(a, b)


def test_shards_merge_into_one_summary(demo_model, small):
    check = AdversarialCheck.from_options({**QUICK, "norms": ["linf"], "eps_linf": [0.0, 0.1]})
    parts = [
        check.measure(demo_model, small.eval.subset(list(idx)), CheckContext(eval_size=40))
        for idx in (range(20), range(20, 40))
    ]
    samples = pd.concat([p.samples for p in parts], ignore_index=True)
    artifacts = {k: torch.cat([p.artifacts[k] for p in parts]) for k in parts[0].artifacts}
    out = check.summarize(samples, artifacts, small, CheckContext())
    rows = pd.DataFrame(out.rows)
    assert (rows[rows["metric"] == "robust_accuracy"]["n"] == 40).all()
    fmn = next(c for c in out.info["costs"] if c["attack"] == "fmn")
    assert fmn["images"] == sum(int(p.artifacts["adversarial/costs"][0, 0]) for p in parts)
    assert "examples" in out.figures
    whole = check.measure(demo_model, small.eval.subset(list(range(40))), CheckContext()).samples
    pd.testing.assert_frame_equal(whole, samples)


@pytest.mark.parametrize("make", [SaturatedSoftmax, QuantisedInput], ids=["saturated-softmax", "quantised-input"])
def test_models_that_mislead_gradients_are_still_broken_and_flagged(demo_model, small, make):
    model = wrap(make(demo_model.net), sample=small.eval.x[:2])
    data = small.with_eval(small.eval.subset(list(range(0, 40, 2))))
    check = AdversarialCheck.from_options(
        {**QUICK, "norms": ["linf"], "eps_linf": [0.0, 0.1, 0.3], "square_queries": 300}
    )
    ctx = CheckContext(seed=0)
    rows = pd.DataFrame(check.run(model, data, ctx).rows)
    at_03 = rows[(rows["metric"] == "robust_accuracy") & (rows["eps"] == 0.3)]["value"].iloc[0]
    assert at_03 <= 0.05
    assert any(w.startswith(WARNING_PREFIX) for w in ctx.warnings)


def test_probability_outputs_are_attacked_through_their_log_and_flagged(demo_model, small):
    model = wrap(SoftmaxOutputs(demo_model.net), sample=small.eval.x[:2])
    assert model.outputs_probabilities
    data = small.with_eval(small.eval.subset(list(range(0, 40, 4))))
    check = AdversarialCheck.from_options({**QUICK, "norms": ["linf"], "eps_linf": [0.0, 0.3]})
    ctx = CheckContext()
    rows = pd.DataFrame(check.run(model, data, ctx).rows)
    assert rows[(rows["metric"] == "robust_accuracy") & (rows["eps"] == 0.3)]["value"].iloc[0] <= 0.1
    assert any("probabilities" in w for w in ctx.warnings)


def test_two_class_model_uses_the_margin_fallback_without_crashing(demo_model, mnist):
    keep = np.flatnonzero(mnist.test.y.numpy() < 2)[:12]
    split = mnist.test.subset(keep)
    data = AuditData("two", ["0", "1"], split)
    model = wrap(FirstClasses(demo_model.net, 2), num_classes=2)
    check = AdversarialCheck.from_options(
        {**QUICK, "norms": ["linf"], "attacks": ["apgd-dlr", "apgd-t", "square"], "eps_linf": [0.0, 0.2, 0.5]}
    )
    rows = pd.DataFrame(check.run(model, data, CheckContext()).rows)
    curve = rows[rows["metric"] == "robust_accuracy"].sort_values("eps")["value"].to_numpy()
    assert curve[0] > 0.9 and curve[-1] < curve[0]


@pytest.mark.parametrize(
    "options,fragment",
    [
        (
            {"eps_linf": [0.0, -0.1]},
            r"option 'eps_linf' must be a non-empty list of numbers in \[0, 1\] \(pixel units\)",
        ),
        ({"eps_linf": [0.1, 2.0]}, r"option 'eps_linf' .* in \[0, 1\] .*got \[0.1, 2.0\]"),
        ({"norms": ["l3"]}, "option 'norms' must be a non-empty list of names from 'linf', 'l2', got \\['l3'\\]"),
        ({"attacks": ["fmn", "hopskip"]}, "option 'attacks' must be a non-empty list of names from 'fmn'"),
        ({"norms": ["l2"], "attacks": ["fmn"]}, "option 'attacks' must include an attack for each norm in"),
        ({"apgd_steps": 0}, "option 'apgd_steps' must be an integer >= 1"),
        ({"headline_eps": 1.5}, "option 'headline_eps' must be at most 1 when the first norm is linf"),
        ({"norms": []}, "option 'norms' must be a non-empty list"),
        ({"survivor_attacks": ["fmn"]}, "option 'survivor_attacks' must list fixed-epsilon attacks only"),
        ({"survivor_attacks": ["boundary"]}, "option 'survivor_attacks' must be a list of names from"),
        ({"eps_linf": [0.0, "0.1x"]}, "option 'eps_linf' must be a non-empty list of numbers"),
        ({"eps_inf": [0.1]}, r"has no option 'eps_inf' \(did you mean 'eps_linf'\?\)"),
    ],
)
def test_bad_options_fail_with_one_clear_line(options, fragment):
    with pytest.raises(InvalidInputError, match=fragment) as err:
        AdversarialCheck.from_options(options)
    assert "\n" not in str(err.value) and str(err.value).startswith("check 'adversarial'")


def test_bad_inputs_to_the_api(demo_model, small):
    x, y = small.eval.x[:4], small.eval.y[:4]
    with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
        evaluate(demo_model, x * 2, y, norms=["linf"])
    with pytest.raises(InvalidInputError, match="data range"):
        evaluate(demo_model, x, y, norms=["l2"], eps=[0.0, 40.0])
    with pytest.raises(InvalidInputError, match="class indices"):
        evaluate(demo_model, x, torch.tensor([0, 1, 2, 11]), norms=["linf"])
    with pytest.raises(InvalidInputError, match="fewer than 2 classes"):
        evaluate(FirstClasses(demo_model.net, 1), x, None, norms=["linf"])


def test_end_to_end_through_the_audit_api(tmp_path):
    import robustcnn

    report = robustcnn.audit(
        model="demo:mnist-cnn",
        data="mnist5k",
        checks=["adversarial"],
        options={"adversarial": {**QUICK, "norms": ["linf"], "eps_linf": [0.0, 0.1, 0.3]}},
        n=20,
        out=tmp_path / "r",
        seed=0,
    )
    table = report.check_table("adversarial")
    curve = table[table["metric"] == "robust_accuracy"]
    assert len(curve) == 3 and math.isclose(curve[curve["eps"] == 0.3]["value"].iloc[0], 0.0, abs_tol=0.1)
    assert "robust_linf@0.3" in report.samples.columns
    assert report.meta["checks"]["adversarial"]["info"]["costs"]
    head = AdversarialCheck().headline(report.table[report.table["check"] == "adversarial"])
    label, value = head.label, head.value
    median = table[table["metric"] == "min_perturbation_median"]["value"].iloc[0]
    assert label.startswith("median smallest L-inf perturbation") and value == median and 0 < value < 0.3


def test_headline_ranks_a_weak_the_demo_and_an_adversarially_trained_model(demo_model, small, mnist):
    from reference_models import three_models

    options = {**QUICK, "norms": ["linf"], "eps_linf": [0.0, 0.3]}
    heads, fixed = {}, {}
    for name, model in three_models(mnist, demo_model, small.eval.x[:2]).items():
        check = AdversarialCheck.from_options(options)
        table = pd.DataFrame(check.run(model, small, CheckContext(seed=0)).rows).assign(model=name, check="adversarial")
        heads[name] = check.headline(table)
        fixed[name] = table[(table["metric"] == "robust_accuracy") & (table["eps"] == 0.3)]["value"].iloc[0]
    # robust accuracy at L-inf 0.3 cannot tell them apart; the median smallest perturbation orders them,
    # each point outside its neighbours' confidence intervals
    assert max(fixed.values()) - min(fixed.values()) <= 0.05
    weak, demo, adversarial = heads["weak"], heads["demo"], heads["adversarial"]
    assert weak.ci_high < demo.value < adversarial.ci_low
    assert weak.value < demo.ci_low and demo.ci_high < adversarial.value

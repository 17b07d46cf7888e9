"""``groups``: by-group metrics cross-checked with pandas, the colored-mnist shortcut caught,
bias amplification on hand-made examples, and bad attribute input."""

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import demographic_parity_difference
from fairlearn.metrics import equalized_odds_difference as fairlearn_eod

from robustcnn.checks import AuditData
from robustcnn.checks.audits.groups import (
    GroupsCheck,
    directional_bias_amplification,
    equalized_odds_difference,
    group_counts,
    zhao_bias_amplification,
)
from robustcnn.data import DatasetRef, Split, stratified_sample
from robustcnn.errors import InvalidInputError
from robustcnn.models import ModelRef


@pytest.fixture(scope="module")
def colored_audit():
    data = DatasetRef("colored-mnist").load()
    return AuditData(data.name, data.classes, data.test.subset(stratified_sample(data.test.y, 200, 0)), data.train)


def _rows(out, metric, **params):
    table = pd.DataFrame(out.rows)
    keep = table["metric"] == metric
    for key, val in params.items():
        keep &= table[key] == val
    return table[keep]


def _with_attrs(audit: AuditData, attrs: dict) -> AuditData:
    e = audit.eval
    return AuditData(audit.name, audit.classes, Split(e.x, e.y, e.ids, pd.DataFrame(attrs)), audit.train)


def test_shortcut_model_is_caught_and_control_is_not(colored_audit, ctx):
    results = {}
    for name in ("colored-mnist-cnn", "colored-mnist-gray-cnn"):
        model = ModelRef(f"demo:{name}").load(10, 3, (28, 28))
        out = GroupsCheck.from_options({"bootstrap": 20}).run(model, colored_audit, ctx)
        gap = _rows(out, "accuracy_gap", group_attr="color_aligned")["value"].iloc[0]
        flips = _rows(out, "counterfactual_flip_rate", group_attr="color")
        overall = flips[flips["group"].isna()]["value"].iloc[0]
        directional = _rows(out, "directional_bias_amplification", group_attr="color")
        results[name] = (gap, overall, directional["value"].iloc[0], directional["ci_low"].iloc[0])
        assert not any("counterfactual" in w for w in out.warnings)
        assert set(out.figures) >= {"group_accuracy", "counterfactual_color", "bias_amplification_color"}
        assert out.samples["cf_color_swaps"].eq(9).all()
    shortcut, control = results["colored-mnist-cnn"], results["colored-mnist-gray-cnn"]
    assert shortcut[0] > 0.3 and control[0] < 0.1  # worst-group gap, aligned vs conflicting colour
    assert shortcut[1] > 0.5 and control[1] < 0.02  # recolouring flips the shortcut model only
    assert shortcut[3] > 0.05 and abs(control[2]) < 0.02  # amplification, with its bootstrap CI above 0


def test_by_group_numbers_match_pandas(demo_model, mnist_audit, ctx):
    rng = np.random.default_rng(0)
    site = rng.choice(["a", "b", "c"], size=len(mnist_audit.eval))
    audit = _with_attrs(mnist_audit, {"site": site})
    out = GroupsCheck.from_options({"counterfactual": False, "bootstrap": 0, "min_group_size": 1}).run(
        demo_model, audit, ctx
    )
    pred = demo_model.logits(audit.eval.x).argmax(1).numpy()
    df = pd.DataFrame({"g": site, "y": audit.eval.y.numpy(), "p": pred})
    df["ok"] = df.y == df.p
    direct = df.groupby("g")["ok"].agg(["mean", "size"])
    acc = _rows(out, "group_accuracy", group_attr="site").set_index("group")
    assert np.allclose(acc.loc[direct.index, "value"], direct["mean"])
    assert (acc.loc[direct.index, "n"] == direct["size"]).all()
    worst = _rows(out, "worst_group_accuracy")
    assert worst["group"].iloc[0] == direct["mean"].idxmin() and np.isclose(
        worst["value"].iloc[0], direct["mean"].min()
    )
    assert np.isclose(_rows(out, "accuracy_gap")["value"].iloc[0], direct["mean"].max() - direct["mean"].min())
    for c in (3, 8):
        cls = str(c)
        recall = df[df.y == c].groupby("g").apply(lambda t, c=c: (t.p == c).mean(), include_groups=False)
        got = _rows(out, "group_recall", **{"class": cls}).set_index("group")["value"]
        assert np.allclose(got.loc[recall.index], recall)
        sel = df.groupby("g").apply(lambda t, c=c: (t.p == c).mean(), include_groups=False)
        got = _rows(out, "group_selection_rate", **{"class": cls}).set_index("group")["value"]
        assert np.allclose(got.loc[sel.index], sel)
        dp = _rows(out, "demographic_parity_difference", **{"class": cls})["value"].iloc[0]
        assert np.isclose(dp, sel.max() - sel.min())
        assert np.isclose(dp, demographic_parity_difference(df.y == c, df.p == c, sensitive_features=df.g))
        fpr = df[df.y != c].groupby("g").apply(lambda t, c=c: (t.p == c).mean(), include_groups=False)
        eo = _rows(out, "equalized_odds_difference", **{"class": cls})["value"].iloc[0]
        assert np.isclose(eo, max(recall.max() - recall.min(), fpr.max() - fpr.min()))
        assert np.isclose(eo, fairlearn_eod((df.y == c).astype(int), (df.p == c).astype(int), sensitive_features=df.g))


def test_equalized_odds_ignores_groups_without_positives():
    y = np.array([1, 0, 0, 0, 1, 1, 0])
    p = np.array([1, 0, 1, 0, 1, 0, 0])
    g = pd.Series(["a", "a", "b", "b", "c", "c", "c"])
    # group b has no positives: fairlearn scores its TPR as 0 and reports 1.0
    assert fairlearn_eod(y, p, sensitive_features=g) == 1.0
    counts = group_counts(y, p, g, [0, 1])
    tpr = (counts["tp_1"] / counts["pos_1"]).where(counts["pos_1"] > 0)
    fpr = (counts["fp_1"] / (counts["count"] - counts["pos_1"])).where(counts["count"] > counts["pos_1"])
    assert tpr.isna().tolist() == [False, True, False]
    assert np.isclose(equalized_odds_difference(tpr, fpr), max(1.0 - 0.5, 0.5 - 0.0))


def test_bias_amplification_on_hand_made_examples():
    # training: class 0 is 75% group 0, class 1 is 75% group 1 (2 groups)
    ty = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    tg = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    g = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    # predictions: everything in group 0 predicted 0, group 1 predicted 1 -> P(g | pred) = 1 on the biased pairs
    pred = g.copy()
    # Zhao: mean over the 2 classes of (1 - 0.75)
    assert np.isclose(zhao_bias_amplification(ty, tg, pred, g, 2, 2), 0.25)
    # faithful predictions amplify nothing in either version
    assert np.isclose(zhao_bias_amplification(ty, tg, ty, tg, 2, 2), 0.0)
    value, delta = directional_bias_amplification(ty, tg, ty, ty, tg, 2, 2)
    assert value == 0.0 and np.allclose(delta, 0)
    # A->T: P(pred=t | a) - P(y=t | a) = +0.25 on the positively correlated pairs, -0.25 on the others
    value, delta = directional_bias_amplification(ty, tg, ty, pred, g, 2, 2)
    assert np.allclose(delta, [[0.25, -0.25], [-0.25, 0.25]]) and np.isclose(value, 0.25)
    # evaluation reference: the same pairs, baseline P(g | y) on the evaluation labels
    assert np.isclose(zhao_bias_amplification(ty, tg, pred, g, 2, 2, reference=(ty, g)), 0.25)


def test_attribute_handling_and_bad_input(demo_model, mnist_audit, ctx):
    n = len(mnist_audit.eval)
    rng = np.random.default_rng(1)
    site = rng.choice(["a", "b"], size=n).astype(object)
    site[:15] = None  # missing metadata rows
    site[15:30] = "missing"  # as the ImageFolder loader fills them
    attrs = {
        "site": site,
        "age": rng.normal(40, 10, size=n),  # numeric with many values: binned
        "scanner": ["s1"] * n,  # one group
        "file": [f"f{i}" for i in range(n)],  # identifier
    }
    audit = _with_attrs(mnist_audit, attrs)
    check = GroupsCheck.from_options({"counterfactual": False, "bootstrap": 0})
    out = check.run(demo_model, audit, ctx)
    counts = _rows(out, "group_count", group_attr="site").set_index("group")["value"]
    assert counts["missing"] == 30 and counts.sum() == n
    age = _rows(out, "group_count", group_attr="age")
    assert len(age) == 4 and age["value"].sum() == n
    assert set(_rows(out, "group_count")["group_attr"]) == {"site", "age"}
    assert any("scanner" in w and "single group" in w for w in out.warnings)
    assert any("file" in w and "too many" in w for w in out.warnings)
    assert any("age" in w and "quantile" in w for w in out.warnings)
    assert any("no training labels" in w for w in out.warnings)  # mnist5k's training split has no 'site'
    for option, message in [
        (["nope"], "not in the evaluation data"),
        (["scanner"], "single group"),
        (["file"], "too many"),
    ]:
        with pytest.raises(InvalidInputError, match=message):
            GroupsCheck.from_options({"attributes": option}).run(demo_model, audit, ctx)
    with pytest.raises(InvalidInputError, match="no usable group attributes"):
        GroupsCheck().run(demo_model, mnist_audit, ctx)
    with pytest.raises(InvalidInputError, match="no usable group attributes"):  # refused before any work
        GroupsCheck().preflight(demo_model, mnist_audit)
    with pytest.raises(InvalidInputError, match="not in the evaluation data"):
        GroupsCheck.from_options({"attributes": ["nope"]}).preflight(demo_model, audit)
    GroupsCheck().preflight(demo_model, audit)
    for bad in ({"attributes": "site"}, {"max_groups": 1}, {"min_group_size": 0}, {"bootstrap": -1}):
        with pytest.raises(InvalidInputError):
            GroupsCheck.from_options(bad)


def test_empty_groups_and_training_only_groups(demo_model, mnist_audit, ctx):
    n = len(mnist_audit.eval)
    site = pd.Categorical(np.where(np.arange(n) % 2, "a", "b"), categories=["a", "b", "never"])
    audit = _with_attrs(mnist_audit, {"site": site})
    train = mnist_audit.train
    train_site = np.where(np.arange(len(train)) % 3 == 0, "c", np.where(np.arange(len(train)) % 2, "a", "b"))
    audit = AuditData(
        audit.name, audit.classes, audit.eval, Split(train.x, train.y, train.ids, pd.DataFrame({"site": train_site}))
    )
    out = GroupsCheck.from_options({"counterfactual": False, "bootstrap": 0}).run(demo_model, audit, ctx)
    assert set(_rows(out, "group_count")["group"]) == {"a", "b"}  # the unused category is not a group
    assert any("training groups c have no evaluation images" in w for w in out.warnings)
    amp = _rows(out, "bias_amplification", variant="zhao2017")
    assert len(amp) == 1 and np.isfinite(amp["value"].iloc[0])

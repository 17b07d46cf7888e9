"""``dataset-bias``: the colour shortcut flagged, association measures against direct formulas,
class balance, near-duplicate leakage, and bad input."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from robustcnn.checks import AuditData
from robustcnn.checks.audits.dataset_bias import DatasetBiasCheck, class_balance
from robustcnn.data import DatasetRef, Split, stratified_sample
from robustcnn.errors import InvalidInputError

FAST = {"probe_max_samples": 1000, "probe_folds": 3}


def _rows(out, metric, **params):
    table = pd.DataFrame(out.rows)
    keep = table["metric"] == metric
    for key, val in params.items():
        keep &= table[key] == val
    return table[keep]


@pytest.fixture(scope="module")
def colored_audit():
    data = DatasetRef("colored-mnist").load()
    return AuditData(data.name, data.classes, data.test.subset(stratified_sample(data.test.y, 200, 0)), data.train)


def test_colour_is_flagged_on_colored_mnist_without_a_model(colored_audit, ctx):
    out = DatasetBiasCheck.from_options(FAST).run(None, colored_audit, ctx)
    v = _rows(out, "cramers_v", split="train").set_index("group_attr")["value"]
    assert v["color"] > 0.9
    assert v["color"] > v.drop("color").max() + 0.3  # well above ink and color_aligned
    risk = _rows(out, "shortcut_risk", split="train")
    flagged = set(risk[risk["value"] == 1]["group_attr"].dropna())
    assert flagged == {"color"}
    probe = _rows(out, "probe_lift", split="train").set_index("variant")["value"]
    assert probe["global-stats"] > 0.8  # mean colour predicts the label
    assert any("color" in w and "shortcut" in w for w in out.warnings)
    head = DatasetBiasCheck().headline(pd.DataFrame(out.rows))
    assert (head.label, head.value, head.better) == ("max Cramer's V (attribute vs label)", v.max(), "lower")
    # evaluation split: colour independent of the label (test_corr = 0.1)
    assert _rows(out, "association_p_value", split="eval", group_attr="color")["value"].iloc[0] > 0.01


def test_association_matches_direct_formulas(mnist_audit, ctx):
    rng = np.random.default_rng(0)
    e = mnist_audit.eval
    y = e.y.numpy()
    hospital = np.where(rng.random(len(y)) < 0.6, y % 3, rng.integers(0, 3, len(y)))  # partly tied to the label
    audit = AuditData(
        mnist_audit.name, mnist_audit.classes, Split(e.x, e.y, e.ids, pd.DataFrame({"hospital": hospital})), None
    )
    out = DatasetBiasCheck.from_options({**FAST, "duplicates": False}).run(None, audit, ctx)
    table = pd.crosstab(hospital, y).to_numpy().astype(float)
    n = table.sum()
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / n
    chi2 = ((table - expected) ** 2 / expected).sum()
    v = math.sqrt(chi2 / (n * (min(table.shape) - 1)))
    assert np.isclose(_rows(out, "cramers_v")["value"].iloc[0], v)
    p_joint = table / n
    outer = p_joint.sum(1, keepdims=True) * p_joint.sum(0, keepdims=True)
    cells = p_joint > 0
    mi = np.sum(p_joint[cells] * np.log(p_joint[cells] / outer[cells]))
    h = lambda p: -np.sum(p[p > 0] * np.log(p[p > 0]))  # noqa: E731
    nmi = mi / ((h(p_joint.sum(1)) + h(p_joint.sum(0))) / 2)
    assert np.isclose(_rows(out, "normalized_mutual_info")["value"].iloc[0], nmi)
    counts = _rows(out, "contingency_count")
    assert counts["value"].sum() == len(y)
    assert (
        counts[(counts["group"] == "0") & (counts["class"] == "3")]["value"].iloc[0]
        == ((hospital == 0) & (y == 3)).sum()
    )
    share = _rows(out, "min_group_share")
    assert np.isclose(share["value"].iloc[0], np.bincount(hospital).min() / len(y))
    assert _rows(out, "association_p_value")["value"].iloc[0] < 1e-6
    # the permutation test agrees that the association is real, and is seeded
    perm = DatasetBiasCheck.from_options({**FAST, "duplicates": False, "permutations": 50, "probe": False})
    p1 = _rows(perm.run(None, audit, ctx), "association_p_value")
    p2 = _rows(perm.run(None, audit, ctx), "association_p_value")
    assert p1["variant"].iloc[0] == "permutation-50" and np.isclose(p1["value"].iloc[0], 1 / 51)
    assert p1["value"].iloc[0] == p2["value"].iloc[0]


def test_class_balance():
    y = np.array([0] * 6 + [1] * 3 + [2] * 1)
    rows = pd.DataFrame(class_balance(y, ["a", "b", "c", "d"], "train"))
    get = lambda m: rows[rows["metric"] == m]["value"].iloc[0]  # noqa: E731
    assert get("imbalance_ratio") == math.inf and get("empty_classes") == 1
    p = np.array([0.6, 0.3, 0.1])
    assert np.isclose(get("normalized_entropy"), -(p * np.log(p)).sum() / np.log(4))
    rows = pd.DataFrame(class_balance(y, ["a", "b", "c"], "train"))
    assert rows[rows["metric"] == "imbalance_ratio"]["value"].iloc[0] == 6.0


def test_near_duplicates_are_found(mnist_audit, ctx):
    train = mnist_audit.train
    e = mnist_audit.eval
    gen = torch.Generator().manual_seed(0)
    planted = [3, 50, 120]
    copies = (e.x[planted] * 0.9 + 0.02 * torch.randn(e.x[planted].shape, generator=gen)).clamp(0, 1)  # dimmed, noisy
    leaky = Split(
        torch.cat([train.x, copies]), torch.cat([train.y, e.y[planted]]), [*train.ids, "copy-a", "copy-b", "copy-c"]
    )
    audit = AuditData(mnist_audit.name, mnist_audit.classes, e, leaky)
    out = DatasetBiasCheck.from_options({"probe": False}).run(None, audit, ctx)
    assert _rows(out, "near_duplicate_rate")["value"].iloc[0] == 3 / len(e)
    found = dict(zip(out.samples["sample"], out.samples["train_match"], strict=False))
    assert found == {e.ids[3]: "copy-a", e.ids[50]: "copy-b", e.ids[120]: "copy-c"}
    assert "near_duplicates" in out.figures
    clean = DatasetBiasCheck.from_options({"probe": False}).run(None, mnist_audit, ctx)
    assert _rows(clean, "near_duplicate_rate")["value"].iloc[0] == 0 and clean.samples is None


def test_bad_input(mnist_audit, ctx):
    with pytest.raises(InvalidInputError, match="not in the evaluation data"):
        DatasetBiasCheck.from_options({"attributes": ["color"]}).run(None, mnist_audit, ctx)
    with pytest.raises(InvalidInputError, match="not in the evaluation data"):
        DatasetBiasCheck.from_options({"attributes": ["color"]}).preflight(None, mnist_audit)
    DatasetBiasCheck().preflight(None, mnist_audit)  # no attributes is fine: balance, probe, duplicates still run
    e = mnist_audit.eval
    one = AuditData("x", mnist_audit.classes, Split(e.x, e.y, e.ids, pd.DataFrame({"site": ["a"] * len(e)})), None)
    with pytest.raises(InvalidInputError, match="single group"):
        DatasetBiasCheck.from_options({"attributes": ["site"]}).run(None, one, ctx)
    out = DatasetBiasCheck.from_options({"probe": False}).run(None, one, ctx)  # not asked for: skipped, said
    assert any("single group" in w for w in out.warnings) and _rows(out, "cramers_v").empty
    for bad in (
        {"flag_cramers_v": 0},
        {"permutations": -1},
        {"probe_folds": 1},
        {"attributes": "site"},
        {"duplicate_threshold": 5},
    ):
        with pytest.raises(InvalidInputError):
            DatasetBiasCheck.from_options(bad)

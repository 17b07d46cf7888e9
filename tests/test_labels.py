"""``label-issues``: planted label noise found by confident learning, the algorithm's steps on a
hand-made example, the ranked list, per-group rates and bad input."""

import numpy as np
import pandas as pd
import pytest

from robustcnn.checks import AuditData
from robustcnn.checks.audits.label_issues import LabelIssuesCheck, calibrate, confident_joint, find_label_issues
from robustcnn.data import Split
from robustcnn.errors import InvalidInputError

PAIRS = [(1, 7), (7, 1), (3, 5), (5, 3), (4, 9), (9, 4), (2, 8), (8, 2)]


def _rows(out, metric, **params):
    table = pd.DataFrame(out.rows)
    keep = table["metric"] == metric
    for key, val in params.items():
        keep &= table[key] == val
    return table[keep]


def plant_noise(split: Split, rate: float, seed: int) -> tuple[Split, np.ndarray]:
    """Flip ``rate`` of the labels, evenly over the class pairs of PAIRS; returns the split and the flipped mask."""
    rng = np.random.default_rng(seed)
    y = split.y.clone()
    per_pair = round(rate * len(y)) // len(PAIRS)
    flipped = np.zeros(len(y), dtype=bool)
    for a, b in PAIRS:
        idx = rng.choice(np.flatnonzero(split.y.numpy() == a), per_pair, replace=False)
        y[idx] = b
        flipped[idx] = True
    return Split(split.x, y, split.ids, split.attrs), flipped


def test_planted_noise_is_found(demo_model, mnist_audit, ctx):
    noisy, flipped = plant_noise(mnist_audit.train, 0.05, seed=0)
    audit = AuditData(mnist_audit.name, mnist_audit.classes, mnist_audit.eval, noisy)
    out = LabelIssuesCheck.from_options({"bootstrap": 50}).run(demo_model, audit, ctx)
    found = np.isin(np.array(noisy.ids), out.samples["sample"].to_numpy())
    precision = (found & flipped).sum() / found.sum()
    recall = (found & flipped).sum() / flipped.sum()
    assert precision >= 0.8 and recall >= 0.8
    noise = _rows(out, "estimated_noise_rate")
    assert abs(noise["value"].iloc[0] - flipped.mean()) <= 0.02
    assert noise["ci_low"].iloc[0] <= noise["value"].iloc[0] <= noise["ci_high"].iloc[0]
    assert noise["variant"].iloc[0] == "cv-features" and noise["split"].iloc[0] == "train"
    # the ranked list: most doubtful first, with the planted pair as the suggestion
    s = out.samples
    assert s["rank"].tolist() == list(range(1, len(s) + 1))
    assert s["self_confidence"].is_monotonic_increasing
    true_label = dict(zip(mnist_audit.train.ids, mnist_audit.train.y.numpy(), strict=False))
    top = s.head(50)
    assert (top["suggested"].to_numpy() == top["sample"].map(true_label).to_numpy()).mean() > 0.9
    # the estimated joint puts its off-diagonal mass on the planted pairs
    joint = _rows(out, "noise_joint")
    planted = joint.apply(lambda r: (int(r["class"]), int(r["target"])) in {(b, a) for a, b in PAIRS}, axis=1)
    assert joint[planted]["value"].sum() > 0.7 * joint["value"].sum()
    assert "label_issues" in out.figures


def test_confident_learning_steps_on_a_hand_example():
    # three classes; image 4 is labelled 0 but looks like class 1
    P = np.array(
        [
            [0.9, 0.05, 0.05],
            [0.8, 0.1, 0.1],
            [0.1, 0.8, 0.1],
            [0.2, 0.7, 0.1],
            [0.1, 0.85, 0.05],
            [0.1, 0.1, 0.8],
            [0.05, 0.05, 0.9],
        ]
    )
    s = np.array([0, 0, 1, 1, 0, 2, 2])
    thresholds, counts, guess = confident_joint(P, s)
    assert np.allclose(thresholds, [(0.9 + 0.8 + 0.1) / 3, 0.75, 0.85])
    # image 3 (p=0.7 for class 1 < 0.75) is above no threshold and is not counted
    assert guess.tolist() == [0, 0, 1, -1, 1, -1, 2]
    assert counts.tolist() == [[2, 1, 0], [0, 1, 0], [0, 0, 1]]
    joint = calibrate(counts, s)
    # rows rescaled to the label counts 3, 2, 2 then normalised by 7
    assert np.allclose(joint, np.array([[2, 1, 0], [0, 2, 0], [0, 0, 2]]) / 7)
    result = find_label_issues(P, s)
    assert np.isclose(result.noise_rate, 1 / 7)
    assert np.flatnonzero(result.issues).tolist() == [4]
    assert np.flatnonzero(find_label_issues(P, s, "confident_joint").issues).tolist() == [4]


def test_clean_labels_give_a_low_noise_estimate_and_group_rates(demo_model, mnist_audit, ctx):
    e = mnist_audit.eval
    site = np.where(np.arange(len(e)) % 2, "north", "south")
    audit = AuditData(
        mnist_audit.name, mnist_audit.classes, Split(e.x, e.y, e.ids, pd.DataFrame({"site": site})), mnist_audit.train
    )
    out = LabelIssuesCheck.from_options({"split": "eval", "bootstrap": 0, "probabilities": "model"}).run(
        demo_model, audit, ctx
    )
    assert _rows(out, "estimated_noise_rate")["value"].iloc[0] < 0.05
    groups = _rows(out, "group_label_issue_rate", group_attr="site").set_index("group")
    flagged = set(out.samples["sample"])
    for g in ("north", "south"):
        members = [i for i, s in zip(e.ids, site, strict=False) if s == g]
        assert groups.loc[g, "n"] == len(members)
        assert np.isclose(groups.loc[g, "value"], sum(m in flagged for m in members) / len(members))
    assert not any("memorised" in w for w in out.warnings)
    on_train = LabelIssuesCheck.from_options({"probabilities": "model", "bootstrap": 0, "max_samples": 500}).run(
        demo_model, mnist_audit, ctx
    )
    assert any("memorised" in w for w in on_train.warnings)


def test_bad_input(demo_model, mnist_audit, ctx):
    no_train = AuditData(mnist_audit.name, mnist_audit.classes, mnist_audit.eval, None)
    with pytest.raises(InvalidInputError, match="no training split"):
        LabelIssuesCheck.from_options({"split": "train"}).run(demo_model, no_train, ctx)
    e = mnist_audit.eval
    keep = np.concatenate([np.flatnonzero(e.y.numpy() != 4), np.flatnonzero(e.y.numpy() == 4)[:1]])
    lonely = AuditData(mnist_audit.name, mnist_audit.classes, e.subset(keep), None)
    with pytest.raises(InvalidInputError, match="single image"):
        LabelIssuesCheck().run(demo_model, lonely, ctx)
    for check, audit, message in [
        (LabelIssuesCheck(), lonely, "single image"),
        (LabelIssuesCheck.from_options({"split": "train"}), no_train, "no training split"),
        (LabelIssuesCheck.from_options({"attributes": ["site"]}), mnist_audit, "not in the train data"),
    ]:
        with pytest.raises(InvalidInputError, match=message):
            check.preflight(demo_model, audit)
    LabelIssuesCheck().preflight(demo_model, mnist_audit)
    LabelIssuesCheck.from_options({"probabilities": "model"}).preflight(
        demo_model, lonely
    )  # no cross-validation needed
    with pytest.raises(InvalidInputError, match="not in the eval data"):
        LabelIssuesCheck.from_options({"split": "eval", "attributes": ["unknown-attr"], "bootstrap": 0}).run(
            demo_model, no_train, ctx
        )
    for bad in ({"split": "test"}, {"probabilities": "oracle"}, {"method": "vote"}, {"folds": 1}, {"bootstrap": -1}):
        with pytest.raises(InvalidInputError):
            LabelIssuesCheck.from_options(bad)

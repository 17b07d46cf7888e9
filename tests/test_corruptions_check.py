"""The ``corruptions`` check on the demo MNIST CNN: rows against direct computation, mCE against a
baseline report, the shared severity-5 artifact, figures, bad options."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from robustcnn.checks import CheckContext, get_check
from robustcnn.checks.natural_shifts.corruptions import ARTIFACT, CorruptionsCheck
from robustcnn.errors import InvalidInputError
from robustcnn.methods.shifts import corrupt
from robustcnn.results.schema import tidy

OPTIONS = {"corruptions": ["contrast", "gaussian_noise", "saturate"], "severities": [1, 5]}


@pytest.fixture(scope="module")
def small_audit(mnist_audit):
    return mnist_audit.with_eval(mnist_audit.eval.subset(list(range(0, 200, 5))))


@pytest.fixture(scope="module")
def result(demo_model, small_audit):
    check = CorruptionsCheck.from_options(OPTIONS)
    return check, check.run(demo_model, small_audit, CheckContext(seed=0))


def test_rows_match_direct_computation(demo_model, small_audit, result):
    check, out = result
    table = tidy(out.rows, "demo", "corruptions")
    x, y = small_audit.eval.x, small_audit.eval.y
    # contrast is deterministic: recompute it here
    pred = demo_model.logits(corrupt(x, "contrast", 5)).argmax(1)
    row = table[(table.metric == "accuracy") & (table.corruption == "contrast") & (table.severity == 5)]
    assert float(row.value.iloc[0]) == pytest.approx(float((pred == y).float().mean()))
    clean = table[table.metric == "clean_accuracy"]
    assert float(clean.value.iloc[0]) == pytest.approx(float((demo_model.logits(x).argmax(1) == y).float().mean()))
    per = table[table.metric == "corruption_accuracy"].set_index("corruption").value
    acc = table[table.metric == "accuracy"]
    for name in OPTIONS["corruptions"]:
        assert per[name] == pytest.approx(acc[acc.corruption == name].value.mean())
    mean = table[(table.metric == "mean_corruption_accuracy") & (table.variant == "benchmark")]
    assert float(mean.value.iloc[0]) == pytest.approx((per["contrast"] + per["gaussian_noise"]) / 2)
    head = check.headline(table)
    assert (head.label, head.value, head.better) == ("mean corruption accuracy", float(mean.value.iloc[0]), "higher")
    assert head.where["metric"] == "mean_corruption_accuracy" and head.n == int(mean.n.iloc[0])
    # severity 5 contrast hurts this model
    assert float(row.value.iloc[0]) < float(clean.value.iloc[0])
    assert set(out.figures) == {"examples", "accuracy"}
    assert all(png.startswith(b"\x89PNG") for png in out.figures.values())


def test_seeded_and_artifact(demo_model, small_audit, result):
    _, out = result
    again = CorruptionsCheck.from_options(OPTIONS).run(demo_model, small_audit, CheckContext(seed=0))
    assert out.samples.equals(again.samples)
    images = out.artifacts[ARTIFACT]
    assert images.shape == small_audit.eval.x.shape
    assert images.min() >= 0 and images.max() <= 1
    # every image carries the severity-5 corruption named in its sample row
    lent = out.samples["severity5_corruption"].to_numpy()
    for k in range(len(images)):
        if lent[k] in ("contrast", "saturate"):
            torch.testing.assert_close(images[k : k + 1], corrupt(small_audit.eval.x[k : k + 1], lent[k], 5))
    capped = CorruptionsCheck.from_options({**OPTIONS, "artifact_size": 7}).run(
        demo_model, small_audit, CheckContext(seed=0)
    )
    assert len(capped.artifacts[ARTIFACT]) == 7


def test_mce_against_baseline(demo_model, small_audit, result):
    _, out = result
    own = tidy(out.rows, "demo", "corruptions")
    # a baseline that is the same model: every CE and relative CE is exactly 1
    same = CorruptionsCheck.from_options(OPTIONS).run(demo_model, small_audit, CheckContext(seed=0, baseline=own))
    table = tidy(same.rows, "demo", "corruptions")
    for metric in ("corruption_error", "mce"):
        vals = table[table.metric == metric].value
        assert len(vals) and (vals - 1).abs().max() < 1e-12, metric
    # a baseline with twice the error: CE = 1/2, as the paper defines it
    worse = own.copy()
    acc = worse.metric.isin(["accuracy", "clean_accuracy"])
    worse.loc[acc, "value"] = 1 - 2 * (1 - worse.loc[acc, "value"])
    worse["model"] = "worse"
    vs = tidy(
        CorruptionsCheck.from_options(OPTIONS).run(demo_model, small_audit, CheckContext(seed=0, baseline=worse)).rows,
        "demo",
        "corruptions",
    )
    ce = vs[vs.metric == "corruption_error"].set_index("corruption").value
    err = {c: own[(own.metric == "accuracy") & (own.corruption == c)].value.rsub(1).sum() for c in ce.index}
    for c in ce.index:
        if err[c] > 0:
            assert ce[c] == pytest.approx(0.5)
            assert vs[(vs.metric == "relative_corruption_error") & (vs.corruption == c)].value.iloc[0] == pytest.approx(
                0.5
            )
    assert set(vs[vs.metric == "mce"].baseline) == {"worse"}
    # mCE averages the finite CEs of the benchmark corruptions; held-out ones (saturate) get a CE only
    assert "saturate" in ce.index
    finite = [ce[c] for c in ("contrast", "gaussian_noise") if c in ce.index and ce[c] == ce[c]]
    mce = vs[vs.metric == "mce"]
    assert float(mce.value.iloc[0]) == pytest.approx(sum(finite) / len(finite))
    assert int(mce.corruptions.iloc[0]) == len(finite)
    # a baseline without corruptions results: a warning, no CE rows
    none = CorruptionsCheck.from_options(OPTIONS).run(
        demo_model,
        small_audit,
        CheckContext(seed=0, baseline=pd.DataFrame({"check": ["clean"], "metric": ["accuracy"], "value": [0.9]})),
    )
    assert not any(r["metric"] == "mce" for r in none.rows) and any(
        "no corruptions results" in w for w in none.warnings
    )


@pytest.mark.parametrize(
    "options, message",
    [
        (
            {"corruptions": ["rain"]},
            r"option 'corruptions' must be a non-empty list of distinct names from .*got \['rain'\]",
        ),
        ({"corruptions": []}, "option 'corruptions' must be a non-empty list"),
        ({"corruptions": ["fog", "fog"]}, "option 'corruptions' must be a non-empty list of distinct"),
        ({"severities": [0, 1]}, r"option 'severities' must be a non-empty list of distinct integers in \[1, 5\]"),
        ({"severities": [6]}, r"integers in \[1, 5\]"),
        ({"severities": [1, 1]}, "distinct integers"),
        ({"severities": []}, "option 'severities' must be a non-empty list"),
        ({"preset": "mnist"}, "option 'preset' must be one of 'auto', 'cifar', 'imagenet'"),
        ({"levels": [1]}, "has no option"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(InvalidInputError, match=message):
        get_check("corruptions").from_options(options)


def test_end_to_end_with_baseline_report(tmp_path):
    """Both shift checks through ``robustcnn.audit``; a second run reads the first as its baseline."""
    import robustcnn

    options = {
        "corruptions": {"corruptions": ["fog", "contrast", "spatter"], "severities": [2, 5]},
        "spatial": {"n_angles": 3, "n_translations": 3, "random_trials": 2, "max_shift": 2},
    }
    first = robustcnn.audit(checks=["corruptions", "spatial"], options=options, n=30, out=tmp_path / "a", seed=0)
    table = first.check_table("corruptions")
    assert len(table[table.metric == "accuracy"]) == 6
    assert first.headlines()["corruptions"].label == "mean corruption accuracy"
    assert first.headlines()["spatial"].label == "worst-of-grid accuracy"
    assert set(first.figures["corruptions"]) >= {"examples", "accuracy"}
    second = robustcnn.audit(
        checks=["corruptions"], options=options, n=30, out=tmp_path / "b", seed=0, baseline=tmp_path / "a"
    )
    mce = second.check_table("corruptions")
    mce = mce[mce.metric == "mce"]
    assert len(mce) == 1 and abs(float(mce.value.iloc[0]) - 1) < 1e-9  # same model and seed: CE = 1

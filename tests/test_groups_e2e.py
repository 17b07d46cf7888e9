"""The bias checks through ``robustcnn.audit``: the colour shortcut of the demo model is caught end to end."""

import robustcnn


def test_audit_catches_the_colour_shortcut(tmp_path):
    report = robustcnn.audit(
        model="demo:colored-mnist-cnn",
        data="colored-mnist",
        checks=["dataset-bias", "label-issues", "groups"],
        options={
            "dataset-bias": {"probe_max_samples": 1000, "probe_folds": 3},
            "label-issues": {"max_samples": 1000, "bootstrap": 0},
            "groups": {"bootstrap": 0, "counterfactual_values": 2},
        },
        n=100,
        out=tmp_path,
        seed=0,
    )
    table = report.table
    assert set(table["check"]) == {"dataset-bias", "label-issues", "groups"}
    v = table[(table["check"] == "dataset-bias") & (table["metric"] == "cramers_v") & (table["split"] == "train")]
    assert v.set_index("group_attr")["value"].idxmax() == "color"
    gap = table[(table["metric"] == "accuracy_gap") & (table["group_attr"] == "color_aligned")]["value"].iloc[0]
    assert gap > 0.3
    flips = table[(table["metric"] == "counterfactual_flip_rate") & table["group"].isna()]
    assert flips["n"].iloc[0] == 200 and flips["value"].iloc[0] > 0.5
    headlines = report.headlines()
    assert headlines["groups"].label == "worst-group accuracy gap" and headlines["groups"].value >= gap
    samples = report.samples
    assert set(samples["check"]) >= {"groups", "label-issues"}
    assert (samples[samples["check"] == "groups"]["sample"].str.startswith("colored-mnist-")).all()
    assert any(p.name.startswith("counterfactual_color") for p in (tmp_path / "figures").rglob("*.png"))

"""fooling-gradient, fooling-evolution and noise through ``robustcnn.audit`` (report, figures, headlines)."""

import json

import robustcnn

QUICK = {
    "fooling-gradient": {"classes": [0, 1], "steps": 40, "prototype_steps": 10},
    "fooling-evolution": {"classes": [0, 1], "population": 20, "generations": 2},
    "noise": {"n": 100},
}


def test_audit_writes_rows_figures_and_headlines(tmp_path):
    report = robustcnn.audit(
        model="demo:mnist-cnn", data="mnist5k", checks=list(QUICK), options=QUICK, n=50, out=tmp_path, seed=0
    )
    table = report.table
    assert set(QUICK) <= set(table["check"])
    grad = report.check_table("fooling-gradient")
    fooled = grad[(grad.metric == "classes_fooled") & (grad.variant == "fooling") & (grad.threshold == 0.9999)]
    assert fooled["value"].item() == 1.0
    evo = report.check_table("fooling-evolution")
    assert set(evo.encoding.dropna()) == {"direct", "cppn"}
    assert evo[evo.metric == "generations_to_confidence"]["status"].isin(["reached", "unreached"]).all()
    heads = report.headlines()
    steps = grad[(grad.metric == "steps_to_confidence") & (grad.variant == "fooling") & (grad.threshold == 0.9999)]
    assert heads["fooling-gradient"].value == sorted(steps["value"])[0]  # the median of two is the lower
    assert heads["fooling-evolution"].value >= 0 and heads["fooling-evolution"].where["threshold"] == 0.9999
    assert "noise" in heads
    assert {"fooling-gradient-contrast", "fooling-gradient-fooling", "fooling-gradient-prototype"} <= set(
        report.figures["fooling-gradient"]
    )
    assert "fooling-evolution-cppn" in report.figures["fooling-evolution"]
    assert json.dumps(report.meta)  # meta.json was written and read back

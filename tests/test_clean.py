import numpy as np

from robustcnn.checks.accuracy.clean import CleanCheck


def test_clean_accuracy_matches_direct_computation(demo_model, mnist_audit, ctx):
    out = CleanCheck().run(demo_model, mnist_audit, ctx)
    rows = {(r["metric"], r.get("class")): r for r in out.rows}
    pred = demo_model.logits(mnist_audit.eval.x).argmax(1).numpy()
    expected = float(np.mean(pred == mnist_audit.eval.y.numpy()))
    acc = rows[("accuracy", None)]
    assert acc["value"] == expected
    assert acc["n"] == 200
    assert acc["ci_low"] <= expected <= acc["ci_high"]
    assert expected >= 0.95
    counts = sum(r["value"] for r in out.rows if r["metric"] == "confusion_count")
    assert counts == 200

"""``confidence`` through ``robustcnn.audit``: runs after ``fooling-gradient`` and scores its images."""

import robustcnn


def test_audit_uses_fooling_gradient_artifact(tmp_path):
    report = robustcnn.audit(
        checks=["confidence", "fooling-gradient"],
        options={
            "fooling-gradient": {"classes": [0, 1, 2], "variants": ["fooling"], "steps": 20},
            "confidence": {"sets": ["uniform-noise", "fooling-gradient"], "noise_n": 40, "odtest": False},
        },
        n=50,
        out=tmp_path,
        seed=0,
    )
    table = report.table[report.table["check"] == "confidence"]
    fooling = table[
        (table["metric"] == "accepted_share") & (table["ood"] == "fooling-gradient") & (table["score"] == "msp")
    ]
    assert len(fooling) == 1
    assert fooling["source"].iloc[0] == "artifact fooling-gradient/images"
    assert fooling["n"].iloc[0] == 3
    assert (table["metric"] == "worst_accepted_share").sum() == 1
    assert report.meta["checks"]["confidence"]["forward"] >= 50 + 40 + 3
    assert (tmp_path / "figures").exists()

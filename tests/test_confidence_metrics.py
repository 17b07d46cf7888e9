"""Unit tests of the confidence check's scores, detection metrics, calibration and OD-test,
cross-checked against independent computations (scipy, explicit loops)."""

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp, softmax
from scipy.stats import entropy, mannwhitneyu

from robustcnn.methods.confidence.calibration import misclassification_auroc, reliability, risk_coverage
from robustcnn.methods.confidence.metrics import detection, fpr_at_tpr, threshold_at_tpr
from robustcnn.methods.confidence.odtest import fit_threshold, od_test
from robustcnn.methods.confidence.scores import confidence_scores, display_values, usable_scores


def test_scores_match_scipy():
    logits = torch.randn(64, 10, generator=torch.Generator().manual_seed(0)) * 5
    s = confidence_scores(logits, temperature=2.0)
    z = logits.double().numpy()
    p = softmax(z, axis=1)
    np.testing.assert_allclose(display_values("msp", s["msp"]), p.max(axis=1), rtol=1e-12)
    np.testing.assert_allclose(s["max_logit"], z.max(axis=1))
    np.testing.assert_allclose(s["energy"], 2.0 * logsumexp(z / 2.0, axis=1), rtol=1e-12)
    np.testing.assert_allclose(s["neg_entropy"], -entropy(p, axis=1), rtol=1e-9, atol=1e-12)


def test_msp_keeps_ranking_where_float32_softmax_saturates():
    logits = torch.tensor([[60.0, 0.0], [80.0, 0.0]])
    assert torch.equal(logits.softmax(1).max(1).values, torch.ones(2))
    msp = confidence_scores(logits, ["msp"])["msp"]
    assert msp[0] < msp[1] < 0


def test_probability_outputs_scored_from_log_probabilities():
    logits = torch.randn(32, 10, generator=torch.Generator().manual_seed(1)) * 3
    probs = logits.softmax(1)
    keep, dropped = usable_scores(["msp", "max_logit", "energy", "neg_entropy"], outputs_probabilities=True)
    assert keep == ["msp", "neg_entropy"] and dropped == ["max_logit", "energy"]
    from_p = confidence_scores(probs, keep, outputs_probabilities=True)
    from_z = confidence_scores(logits, keep)
    for name in keep:
        np.testing.assert_allclose(from_p[name], from_z[name], atol=1e-5)
    with pytest.raises(ValueError):
        confidence_scores(probs, ["energy"], outputs_probabilities=True)


def test_threshold_keeps_the_requested_share_of_clean_inputs():
    clean = np.random.default_rng(0).normal(size=200)
    t = threshold_at_tpr(clean, 0.95)
    assert np.sum(clean >= t) == 190
    assert np.sum(clean > t) == 189


def test_detection_matches_mann_whitney_and_fpr_equals_accepted_share():
    rng = np.random.default_rng(1)
    clean, ood = rng.normal(1.0, 1.0, 300), rng.normal(0.0, 1.0, 120)
    det = detection(clean, ood, 0.95)
    u = mannwhitneyu(clean, ood).statistic
    assert det.auroc == pytest.approx(u / (len(clean) * len(ood)))
    assert det.fpr_at_tpr == pytest.approx(det.accepted / det.n_ood)
    assert det.accepted == int(np.sum(ood >= threshold_at_tpr(clean, 0.95)))
    assert det.clean_kept >= 0.95
    assert 0 < det.aupr_out < 1 and 0 < det.aupr_in < 1


def test_detection_extremes():
    clean = np.linspace(1, 2, 100)
    far = detection(clean, np.linspace(-2, -1, 50))
    assert far.auroc == 1.0 and far.accepted == 0 and far.fpr_at_tpr == 0.0
    same = detection(clean, clean.copy())
    assert same.auroc == 0.5 and same.accepted == 95
    above = detection(clean, clean + 10)
    assert above.auroc == 0.0 and above.accepted == 100
    assert fpr_at_tpr(clean, clean + 10) == 1.0


def test_ece_matches_explicit_loop():
    rng = np.random.default_rng(2)
    conf = rng.uniform(0.1, 1.0, 500)
    correct = rng.uniform(size=500) < conf**2
    expected = 0.0
    for b in range(15):
        lo, hi = b / 15, (b + 1) / 15
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            expected += inside.sum() / 500 * abs(correct[inside].mean() - conf[inside].mean())
    rel = reliability(conf, correct, 15)
    assert rel.ece == pytest.approx(expected)
    assert rel.counts.sum() == 500


def test_ece_near_zero_when_calibrated():
    rng = np.random.default_rng(3)
    conf = rng.uniform(0, 1, 200_000)
    correct = rng.uniform(size=conf.size) < conf
    assert reliability(conf, correct).ece < 0.01


def test_risk_coverage_by_hand():
    rc = risk_coverage(np.array([3.0, 2.0, 1.0]), np.array([1, 0, 1]))
    np.testing.assert_allclose(rc.risk, [0.0, 0.5, 1 / 3])
    assert rc.aurc == pytest.approx((0 + 0.5 + 1 / 3) / 3)
    assert rc.optimal_aurc == pytest.approx((1 / 3) / 3)
    assert rc.accuracy_at(0.34) == (0.5, 2)
    perfect = risk_coverage(np.array([0.9, 0.8, 0.1]), np.array([1, 1, 0]))
    assert perfect.excess_aurc == 0.0


def test_misclassification_auroc():
    assert misclassification_auroc(np.array([3.0, 2.0, 1.0, 0.0]), np.array([1, 1, 0, 0])) == 1.0
    assert math.isnan(misclassification_auroc(np.array([1.0, 2.0]), np.array([1, 1])))


def test_od_test_threshold_does_not_transfer_to_confident_bad_inputs():
    rng = np.random.default_rng(4)
    clean = rng.normal(0, 1, 400)
    sets = {"low": rng.normal(-5, 1, 400), "high": rng.normal(5, 1, 400)}
    results = {(r.fit_on, r.test_on): r for r in od_test(clean, sets, seed=0)}
    assert results[("low", "low")].accuracy > 0.95
    assert results[("low", "high")].accuracy == pytest.approx(0.5, abs=0.03)
    assert results[("high", "high")].accuracy == 0.5  # best threshold rejects everything
    t = fit_threshold(clean, sets["low"])
    assert -5 < t < 0

"""The advisory default policy judges scorecard headlines by their safer direction."""

from __future__ import annotations

import math

from robustcnn.checks import Headline
from robustcnn.reports.verdicts import default_verdict, load_default_policy

POLICY = {"accuracy": {"warn": 0.95, "fail": 0.8}, "worst_accepted_share": {"warn": 0.2, "fail": 0.5}}


def head(metric: str, value: float, better: str) -> Headline:
    return Headline("x", value, better, where={"metric": metric})


def test_higher_is_better():
    assert [default_verdict(head("accuracy", v, "higher"), POLICY) for v in (0.99, 0.9, 0.5)] == [
        "pass",
        "warn",
        "fail",
    ]


def test_lower_is_better():
    assert [default_verdict(head("worst_accepted_share", v, "lower"), POLICY) for v in (0.1, 0.3, 1.0)] == [
        "pass",
        "warn",
        "fail",
    ]


def test_unknown_metric_or_missing_value_gets_no_verdict():
    assert default_verdict(head("something_new", 0.0, "higher"), POLICY) == ""
    assert default_verdict(head("accuracy", math.nan, "higher"), POLICY) == ""


def test_shipped_policy_bounds_the_core_headlines():
    policy = load_default_policy()
    assert {"accuracy", "robust_accuracy", "mean_corruption_accuracy", "worst_accepted_share"} <= set(policy)
    assert all(set(b) == {"warn", "fail"} for b in policy.values())


def test_scorecard_and_page_colour_rows_by_verdict(tmp_path):
    from test_html_helpers import write_synthetic

    from robustcnn.reports.html import render_html
    from robustcnn.reports.scorecard import scorecard

    report = write_synthetic(tmp_path / "r", accuracy=0.9)
    card = scorecard(report).set_index("check")
    assert card.loc["clean", "verdict"] == "warn"
    html = render_html(report)
    assert '<span class="badge warn">warn</span>' in html
    assert '<span class="badge ok">' not in html
    assert '<div class="scroll"><table class="rc-table">\n<thead><tr><th>family</th>' not in html

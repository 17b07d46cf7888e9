"""The advisory default policy judges scorecard headlines by their safer direction."""

from __future__ import annotations

import math
import shutil

import pandas as pd
import pytest

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
    core = {"accuracy", "robust_accuracy", "mean_corruption_accuracy", "worst_accepted_share"}
    assert core | {"min_perturbation_median"} <= set(policy)
    assert all({"warn", "fail"} <= set(b) <= {"warn", "fail", "where"} for b in policy.values())


def test_median_perturbation_is_judged_for_linf_only():
    """An undefended MNIST CNN (median near 0.1) warns, an adversarially trained one (0.3) passes,
    a fragile one fails; an L2 median, on another scale, gets no verdict."""
    policy = load_default_policy()

    def median(v: float, norm: str) -> Headline:
        return Headline("x", v, "higher", "value", where={"metric": "min_perturbation_median", "norm": norm})

    assert [default_verdict(median(v, "linf"), policy) for v in (0.3, 0.1, 0.02)] == ["pass", "warn", "fail"]
    assert default_verdict(median(1.2, "l2"), policy) == ""


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


def test_scorecard_shows_rates_as_percent_with_ci_and_the_drop_from_clean(tmp_path):
    from test_html_helpers import clean_rows

    from robustcnn.reports.html import render_html
    from robustcnn.reports.markdown import render_summary
    from robustcnn.reports.scorecard import scorecard, scorecard_text
    from robustcnn.results.schema import combine, rate, tidy, value
    from robustcnn.results.writer import write_report

    corrupted = [value("mean_corruption_accuracy", 0.62, 100, variant="all")]
    spatial = [rate("accuracy", 31, 100, transform="grid")]
    table = combine(
        [
            tidy(clean_rows(0.9), "m", "clean"),
            tidy(corrupted, "m", "corruptions"),
            tidy(spatial, "m", "spatial"),
            tidy([value("shortcut_lift", 0.3, 100)], "m", "dataset-bias"),
        ]
    )
    entry = {"status": "complete", "config": {}, "warnings": []}
    meta = {"schema_version": 1, "checks": dict.fromkeys(("clean", "corruptions", "spatial", "dataset-bias"), entry)}
    report = write_report(tmp_path / "r", table, pd.DataFrame({"sample": ["a"]}), meta, {})
    card = scorecard(report).set_index("check")
    assert card.loc["spatial", "vs_clean"] == pytest.approx(0.31 - 0.9)
    assert card.loc["corruptions", "vs_clean"] == pytest.approx(0.62 - 0.9)
    assert math.isnan(card.loc["clean", "vs_clean"])
    page, summary, text = render_html(report), render_summary(report), scorecard_text(scorecard(report))
    for shown in (page, summary, text):
        assert "90% (83–94)" in shown and "31% (23–41)" in shown and "62%" in shown
        assert "−59 pts" in shown and "−28 pts" in shown
    assert '<span class="badge fail">fail</span>' in page  # the verdict badges stay
    assert "❌ fail" in summary


def test_scorecard_shows_the_change_against_the_baseline_report(tmp_path):
    from test_html_helpers import clean_rows

    from robustcnn.reports.html import render_html
    from robustcnn.reports.markdown import render_summary
    from robustcnn.reports.scorecard import scorecard, scorecard_text
    from robustcnn.results.schema import combine, tidy, value
    from robustcnn.results.writer import write_report

    def audit(folder: str, accuracy: float, lift: float, baseline: str | None = None):
        table = combine(
            [
                tidy(clean_rows(accuracy), "m", "clean"),
                tidy([value("probe_lift", lift, 100, variant="pixels")], "m", "dataset-bias"),
            ]
        )
        entry = {"status": "complete", "config": {}, "warnings": []}
        meta = {
            "schema_version": 1,
            "checks": dict.fromkeys(("clean", "dataset-bias"), entry),
            "plan": {"baseline": baseline},
        }
        return write_report(tmp_path / folder, table, pd.DataFrame({"sample": ["a"]}), meta, {})

    before = audit("before", 0.9, 0.3)
    after = audit("after", 0.8, 0.45, baseline=str(before.path))
    card = scorecard(after).set_index("check")
    assert card.loc["clean", "vs_baseline"] == pytest.approx(-0.1)
    assert card.loc["dataset-bias", "vs_baseline"] == pytest.approx(0.15)
    assert scorecard(before)["vs_baseline"].isna().all()  # no baseline named: no column shown
    for shown in (render_html(after), render_summary(after), scorecard_text(scorecard(after))):
        assert "vs baseline" in shown and "−10.0 pts" in shown and "+0.15" in shown
    assert "vs baseline" not in scorecard_text(scorecard(before))
    shutil.rmtree(before.path)  # a baseline that is gone: no comparison, still a scorecard
    assert scorecard(after)["vs_baseline"].isna().all()


def test_shipped_policy_judges_confident_noise():
    policy = load_default_policy()
    noise = [
        Headline("noise images predicted above 0.99", v, "lower", "rate", where={"metric": "share_above"})
        for v in (0.03, 0.2, 0.999)
    ]
    assert [default_verdict(h, policy) for h in noise] == ["pass", "warn", "fail"]

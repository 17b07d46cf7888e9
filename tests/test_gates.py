"""Gate policies: parsing, row selection, verdicts, baselines and JUnit output."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import pandas as pd
import pytest
from test_html_helpers import CLASSES, clean_rows, curve_rows

from robustcnn.errors import InvalidInputError, NothingEvaluatedError, UsageError
from robustcnn.reports.gates import evaluate, exit_code, junit_xml, load_policy, parse_gates, select_rows, summary_line
from robustcnn.results.schema import combine, tidy


def report(drop: float = 0.0, status: str = "complete", rows: list | None = None) -> SimpleNamespace:
    table = combine(
        [tidy(clean_rows(), "m", "clean"), tidy(rows if rows is not None else curve_rows(drop), "m", "confidence")]
    )
    return SimpleNamespace(
        table=table, meta={"checks": {"clean": {"status": "complete"}, "confidence": {"status": status}}}
    )


def gate(**table) -> list:
    return parse_gates([{"check": "confidence", "metric": "robust_accuracy", **table}])


def verdict(gates, rep=None, **kw):
    (result,) = evaluate(gates, rep if rep is not None else report(), **kw)
    return result


def test_bound_on_the_overall_rows_takes_the_worst_attack():
    result = verdict(gate(norm="linf", eps=0.1, min=0.45))
    assert result.status == "fail" and result.rows == 2  # fgsm and pgd; per-class rows left out
    assert result.value == pytest.approx(0.4)
    assert "measured 0.4" in result.message and "attack=pgd" in result.message and ">= 0.45" in result.message
    assert verdict(gate(norm="linf", eps=0.1, attack="fgsm", min=0.45)).status == "pass"


def test_wildcard_and_list_filters():
    per_class = verdict(gate(norm="linf", eps=0.1, where={"class": "*"}, min=0.52))
    assert per_class.rows == len(CLASSES) and per_class.value == pytest.approx(0.5) and per_class.status == "fail"
    both = verdict(gate(norm=["linf", "l2"], eps=[0.05, 0.5], attack="pgd", max=0.59))
    assert both.rows == 2 and both.value == pytest.approx(0.6) and both.status == "fail"


def test_numbers_match_with_tolerance_and_text_columns_by_string():
    rows = curve_rows()
    rows[0]["eps"] = 0.05 + 1e-12
    assert verdict(gate(norm="linf", eps=0.05, attack="fgsm", min=0), report(rows=rows)).rows == 1
    class_rows = [
        {"metric": "robust_accuracy", "value": 0.5, "n": 10, "class": "3"},
        {"metric": "robust_accuracy", "value": 0.1, "n": 10, "class": "4"},
    ]
    assert verdict(gate(where={"class": 3}, min=0.4), report(rows=class_rows)).status == "pass"


def test_a_severity_parameter_is_filtered_through_where():
    rows = [
        {"metric": "robust_accuracy", "value": 0.9 - 0.1 * s, "n": 10, "corruption": "fog", "severity": s}
        for s in (1, 5)
    ]
    result = verdict(gate(where={"severity": 5}, severity="warn", min=0.5), report(rows=rows))
    assert result.rows == 1 and result.value == pytest.approx(0.4) and result.status == "warn"


def test_severity_warn_and_warn_only():
    assert verdict(gate(norm="linf", eps=0.1, min=0.9, severity="warn")).status == "warn"
    results = evaluate(gate(norm="linf", eps=0.1, min=0.9), report(), warn_only=True)
    assert [r.status for r in results] == ["warn"] and exit_code(results) == 0


def test_missing_value_and_failed_check_never_pass():
    rows = [{"metric": "robust_accuracy", "value": math.nan, "n": 0}]
    result = verdict(gate(min=0.0), report(rows=rows))
    assert result.status == "fail" and "NaN" in result.message
    failed = verdict(gate(min=0.0), report(status="error"))
    assert failed.status == "fail" and "did not complete" in failed.message


def test_gate_matching_no_row_is_invalid():
    with pytest.raises(InvalidInputError, match=r"eps in \{0.05, 0.1, 0.5, 1\}"):
        evaluate(gate(norm="linf", eps=0.3, min=0.1), report())
    with pytest.raises(InvalidInputError, match="has no parameter 'severty'"):
        evaluate(gate(severty="warn", min=0.1), report())
    with pytest.raises(InvalidInputError, match="no metric 'robust_acc'"):
        evaluate(parse_gates([{"check": "confidence", "metric": "robust_acc", "min": 0}]), report())
    with pytest.raises(InvalidInputError, match="'fooling-gradient' is not in the report"):
        evaluate(parse_gates([{"check": "fooling-gradient", "metric": "x", "min": 0}]), report())
    with pytest.raises(InvalidInputError, match="holds numbers"):
        evaluate(gate(eps="small", min=0.1), report())


def test_nothing_to_evaluate():
    with pytest.raises(NothingEvaluatedError):
        evaluate([], report())
    empty = SimpleNamespace(table=pd.DataFrame(columns=["model", "check", "metric", "value"]), meta={})
    with pytest.raises(NothingEvaluatedError):
        evaluate(gate(min=0), empty)


def test_change_against_a_baseline():
    drop = gate(norm="linf", eps=0.05, max_drop=0.04)
    with pytest.raises(UsageError, match="--baseline"):
        evaluate(drop, report())
    small = verdict(drop, report(drop=0.03), baseline=report())
    assert small.status == "pass" and small.baseline == pytest.approx(0.6) and "change -0.03" in small.message
    large = verdict(drop, report(drop=0.05), baseline=report())
    assert large.status == "fail" and large.baseline - large.value == pytest.approx(0.05)
    rise = verdict(gate(norm="linf", eps=0.05, max_rise=0.01), report(), baseline=report(drop=0.05))
    assert rise.status == "fail" and "change +0.05" in rise.message
    with pytest.raises(InvalidInputError, match="baseline"):
        evaluate(drop, report(), baseline=report(rows=[{"metric": "other", "value": 1.0}]))


@pytest.mark.parametrize(
    "table, message",
    [
        ({"check": "clean", "metric": "accuracy"}, "give a bound"),
        ({"check": "nope", "metric": "accuracy", "min": 1}, "unknown check 'nope'"),
        ({"metric": "accuracy", "min": 1}, "needs check"),
        ({"check": "clean", "metric": "accuracy", "min": "high"}, "min must be a finite number"),
        ({"check": "clean", "metric": "accuracy", "min": 0.9, "max": 0.5}, "above max"),
        ({"check": "clean", "metric": "accuracy", "min": 0.9, "max_drop": 0.1}, "split it into two gates"),
        ({"check": "clean", "metric": "accuracy", "max_drop": -0.1}, "must be >= 0"),
        ({"check": "clean", "metric": "accuracy", "min": 0.9, "severity": "error"}, "severity must be"),
        ({"check": "clean", "metric": "accuracy", "min": 0.9, "class": {"a": 1}}, "filter class must be"),
        ({"check": "clean", "metric": "accuracy", "min": 0.9, "class": "1", "where": {"class": "2"}}, "given twice"),
        ({"check": "clean", "metric": "accuracy", "min": 0.9, "value": 1}, "not a parameter"),
    ],
)
def test_invalid_gates(table, message):
    with pytest.raises(InvalidInputError, match=message):
        parse_gates([table])


def test_policy_files(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text(
        '[model]\nspec = "demo:mnist-cnn"\n\n[[gate]]\ncheck = "clean"\nmetric = "accuracy"\nmin = 0.9\n\n'
        '[[gate]]\ncheck = "clean"\nmetric = "accuracy"\nmin = 0.9\n'
    )
    names = [g.name for g in load_policy(plan)]
    assert names == ["clean/accuracy >= 0.9", "clean/accuracy >= 0.9 #2"]
    single = tmp_path / "single.toml"
    single.write_text('[gate]\ncheck = "clean"\nmetric = "accuracy"\nmin = 0.9\n')
    none = tmp_path / "none.toml"
    none.write_text('[model]\nspec = "x"\n')
    broken = tmp_path / "broken.toml"
    broken.write_text("[[gate]\n")
    for path, message in (
        (single, r"\[\[gate\]\]"),
        (none, "no \\[\\[gate\\]\\]"),
        (broken, "not valid TOML"),
        (tmp_path / "missing.toml", "not found"),
    ):
        with pytest.raises(InvalidInputError, match=message):
            load_policy(path)


def test_select_rows_prefers_the_overall_row():
    rows = select_rows(report().table, gate(norm="linf", eps=0.1, attack="pgd", min=0)[0])
    assert len(rows) == 1 and rows["class"].isna().all()


def test_junit_has_one_testcase_per_gate_with_value_and_bound():
    gates = parse_gates(
        [
            {
                "check": "confidence",
                "metric": "robust_accuracy",
                "norm": "linf",
                "eps": 0.1,
                "min": 0.45,
                "name": "linf <0.1>\x01",
            },
            {"check": "clean", "metric": "accuracy", "min": 0.5},
            {"check": "clean", "metric": "accuracy", "min": 0.95, "severity": "warn"},
        ]
    )
    results = evaluate(gates, report())
    assert exit_code(results) == 1 and summary_line(results) == "3 gates: 1 passed, 1 warned, 1 failed"
    root = ET.fromstring(junit_xml(results, suite="m"))
    cases = root.findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == ["linf <0.1>?", "clean/accuracy >= 0.5", "clean/accuracy >= 0.95"]
    assert root.get("tests") == "3" and root.get("failures") == "1"
    failure = cases[0].find("failure")
    assert "measured 0.4" in failure.get("message") and ">= 0.45" in failure.get("message")
    assert cases[1].find("failure") is None and "measured 0.9" in cases[1].find("system-out").text
    assert cases[2].find("system-out").text.startswith("WARNING:")
    two = ET.fromstring(junit_xml({"a": results[:1], "b": results[1:]}))
    assert [s.get("tests") for s in two.findall("testsuite")] == ["1", "2"]

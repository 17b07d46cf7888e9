"""`robustcnn gate` and `robustcnn audit --policy`: exit codes, JUnit and markdown outputs."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from test_html_helpers import write_synthetic

from robustcnn.cli import main
from robustcnn.results.schema import combine
from robustcnn.results.writer import write_report

PASSING = """
[[gate]]
check = "clean"
metric = "accuracy"
min = 0.85

[[gate]]
check = "confidence"
metric = "robust_accuracy"
norm = "linf"
eps = 0.05
min = 0.5
severity = "warn"
"""

FAILING = (
    PASSING
    + """
[[gate]]
name = "robust accuracy at linf 0.1"
check = "confidence"
metric = "robust_accuracy"
where = { norm = "linf", eps = 0.1 }
min = 0.45
"""
)


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gate-cli")
    return {
        "base": write_synthetic(root / "base", curve_check="confidence").path,
        "worse": write_synthetic(root / "worse", drop=0.05, curve_check="confidence").path,
    }


def policy(tmp_path: Path, text: str) -> str:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return str(path)


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, list(args), env=env)


def test_passing_policy_exits_0(reports, tmp_path):
    result = run("gate", str(reports["base"]), "--policy", policy(tmp_path, PASSING))
    assert result.exit_code == 0, result.output
    assert "2 gates: 2 passed, 0 warned, 0 failed" in result.output


def test_failing_policy_exits_1_and_names_the_gate(reports, tmp_path):
    junit, markdown, step = tmp_path / "gates.xml", tmp_path / "gates.md", tmp_path / "step.md"
    result = run(
        "gate",
        str(reports["base"]),
        "--policy",
        policy(tmp_path, FAILING),
        "--junit",
        str(junit),
        "--markdown",
        str(markdown),
        env={"GITHUB_STEP_SUMMARY": str(step)},
    )
    assert result.exit_code == 1, result.output
    assert "FAIL  robust accuracy at linf 0.1" in result.output
    failed = [c for c in ET.parse(junit).getroot().iter("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["robust accuracy at linf 0.1"]
    assert "measured 0.4" in failed[0].find("failure").get("message")
    text = markdown.read_text()
    assert "| ❌ fail | robust accuracy at linf 0.1 | 0.4 | &gt;= 0.45 |" in text
    assert step.read_text() == text + ("" if text.endswith("\n") else "\n")


def test_warn_only_exits_0(reports, tmp_path):
    result = run("gate", str(reports["base"]), "--policy", policy(tmp_path, FAILING), "--warn-only")
    assert result.exit_code == 0 and "WARN  robust accuracy at linf 0.1" in result.output


@pytest.mark.parametrize(
    "text, message",
    [
        ('[[gate]]\ncheck = "clean"\nmetric = "class_accuracy"\nclass = "seven"\nmin = 0.5\n', "matches no row"),
        ('[[gate]]\ncheck = "clean"\nmetric = "acc"\nmin = 0.5\n', "no metric 'acc'"),
        ('[[gate]]\ncheck = "clean"\nmin = 0.5\n', "needs metric"),
        ('title = "no gates"\n', "no \\[\\[gate\\]\\] tables"),
    ],
)
def test_invalid_policy_exits_4(reports, tmp_path, text, message):
    result = run("gate", str(reports["base"]), "--policy", policy(tmp_path, text))
    assert result.exit_code == 4, result.output
    assert re.search(message, result.output) and "Traceback" not in result.output


def test_usage_errors_exit_2(reports, tmp_path):
    assert run("gate", str(reports["base"])).exit_code == 2
    drop = policy(tmp_path, '[[gate]]\ncheck = "clean"\nmetric = "accuracy"\nmax_drop = 0.01\n')
    result = run("gate", str(reports["worse"]), "--policy", drop)
    assert result.exit_code == 2 and "--baseline" in result.output


def test_baseline_drop(reports, tmp_path):
    drop = policy(
        tmp_path,
        '[[gate]]\ncheck = "confidence"\nmetric = "robust_accuracy"\nnorm = "l2"\neps = 0.5\nmax_drop = 0.02\n',
    )
    result = run("gate", str(reports["worse"]), "--policy", drop, "--baseline", str(reports["base"]))
    assert result.exit_code == 1 and "change -0.05" in result.output
    same = run("gate", str(reports["base"]), "--policy", drop, "--baseline", str(reports["base"]))
    assert same.exit_code == 0, same.output


def test_empty_report_exits_5(tmp_path):
    out = tmp_path / "empty"
    write_report(out, combine([]), pd.DataFrame(), {"model": {"name": "m"}, "checks": {}}, {})
    result = run("gate", str(out), "--policy", policy(tmp_path, PASSING))
    assert result.exit_code == 5, result.output


def test_audit_with_failing_policy(tmp_path):
    """Audit and gate in one go on the demo model: exit 1, JUnit and report.html name the gate."""
    junit, out = tmp_path / "junit.xml", tmp_path / "demo"
    text = '[[gate]]\nname = "confidence below 0.5"\ncheck = "clean"\nmetric = "mean_confidence"\nmax = 0.5\n'
    result = run(
        "audit",
        "--checks",
        "clean",
        "--n",
        "30",
        "--out",
        str(out),
        "--no-progress",
        "--policy",
        policy(tmp_path, text),
        "--junit",
        str(junit),
    )
    assert result.exit_code == 1, result.output
    (case,) = ET.parse(junit).getroot().iter("testcase")
    assert case.get("name") == "confidence below 0.5" and case.find("failure") is not None
    assert "confidence below 0.5" in (out / "report.html").read_text()
    assert "## Gates" in (out / "summary.md").read_text()


def test_audit_rejects_invalid_policy_before_running(tmp_path):
    text = '[[gate]]\ncheck = "clean"\nmetric = "accuracy"\nmin = 2\nseverity = "fatal"\n'
    result = run(
        "audit", "--checks", "clean", "--n", "30", "--out", str(tmp_path / "x"), "--policy", policy(tmp_path, text)
    )
    assert result.exit_code == 4 and "severity" in result.output
    assert not (tmp_path / "x").exists()

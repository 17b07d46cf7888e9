"""Several models in one `robustcnn audit`: one report each, index.html with the comparison, one gate run."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from click.testing import CliRunner

from robustcnn.cli import main

POLICY = '[[gate]]\ncheck = "clean"\nmetric = "accuracy"\nmin = 0.5\n'


def test_repeated_model_writes_reports_index_and_per_model_junit(tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    out, junit = tmp_path / "out", tmp_path / "gates.xml"
    args = [
        "audit",
        "--model",
        "demo:mnist-cnn",
        "--model",
        "demo:mnist-lenet",
        "--data",
        "digits",
        "--n",
        "40",
        "--checks",
        "clean",
        "--out",
        str(out),
        "--no-progress",
        "--policy",
        str(policy),
        "--junit",
        str(junit),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (out / "mnist-cnn" / "results.csv").exists() and (out / "mnist-lenet" / "results.csv").exists()
    page = (out / "index.html").read_text()
    assert "mnist-cnn/report.html" in page and "mnist-lenet/report.html" in page and "Δ mnist-lenet" in page
    header = (out / "comparison.csv").read_text().splitlines()[0]
    assert header.startswith("check,metric") and "mnist-cnn" in header and "mnist-lenet" in header
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert sorted(s.get("name") for s in suites) == ["mnist-cnn", "mnist-lenet"]
    assert all(len(s.findall("testcase")) == 1 for s in suites)
    rerun = CliRunner().invoke(main, args)  # the index and comparison robustcnn wrote are replaced
    assert rerun.exit_code == 0, rerun.output


def test_index_never_replaces_a_user_file(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.html").write_text("my page")
    args = [
        "audit",
        "--model",
        "demo:mnist-cnn",
        "--model",
        "demo:mnist-lenet",
        "--data",
        "digits",
        "--n",
        "20",
        "--checks",
        "clean",
        "--out",
        str(out),
        "--no-progress",
        "--force",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 4
    assert (out / "index.html").read_text() == "my page" and not (out / "mnist-cnn").exists()


def test_name_with_several_models_is_a_usage_error():
    result = CliRunner().invoke(
        main, ["audit", "--model", "demo:mnist-cnn", "--model", "demo:mnist-lenet", "--name", "x"]
    )
    assert result.exit_code == 2 and "--name" in result.output

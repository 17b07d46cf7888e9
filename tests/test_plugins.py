"""Third-party checks through the ``robustcnn.checks`` entry-point group: the example plugin in
tests/fixtures is pip-installed into a temporary folder and runs through the CLI, the report and a
gate; a broken plugin is skipped with a warning and never stops the tool."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "tests" / "fixtures" / "example-plugin"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A folder holding the installed example plugin (its package and its entry-point metadata)."""
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("plugin") / "example-plugin"
    shutil.copytree(PLUGIN, source)  # the build writes beside the sources: keep it out of the repository
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path_factory.mktemp("build"),
    )
    return target


def cli(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    return subprocess.run([sys.executable, "-m", "robustcnn", *args], capture_output=True, text=True, env=env, cwd=cwd)


def test_plugin_check_runs_through_cli_report_and_gate(site, tmp_path):
    listed = cli(site, "list", cwd=tmp_path)
    assert listed.returncode == 0 and "darkening" in listed.stdout

    out = tmp_path / "report"
    run = cli(
        site,
        "audit",
        "--data",
        "digits",
        "--n",
        "30",
        "--checks",
        "clean,darkening",
        "--set",
        "darkening.factors=[0.5, 0.1]",
        "--out",
        str(out),
        "--no-progress",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    table = pd.read_csv(out / "results.csv")
    rows = table[table["check"] == "darkening"]
    assert sorted(rows["factor"]) == [0.1, 0.5] and rows["n"].eq(30).all()
    assert "Accuracy on darkened images" in (out / "report.html").read_text()
    assert "accuracy at 0.1x brightness" in cli(site, "report", "show", str(out), cwd=tmp_path).stdout

    policy = tmp_path / "policy.toml"
    for bound, code in (("0.0", 0), ("1.01", 1)):
        policy.write_text(f'[[gate]]\ncheck = "darkening"\nmetric = "accuracy"\nfactor = 0.5\nmin = {bound}\n')
        junit = tmp_path / f"gates-{code}.xml"
        verdict = cli(site, "gate", str(out), "--policy", str(policy), "--junit", str(junit), cwd=tmp_path)
        assert verdict.returncode == code, verdict.stderr
        assert "darkening" in junit.read_text()


def test_plugin_options_are_validated(site, tmp_path):
    run = cli(
        site,
        "audit",
        "--data",
        "digits",
        "--n",
        "10",
        "--checks",
        "darkening",
        "--set",
        "darkening.factors=[2.0]",
        "--out",
        str(tmp_path / "r"),
        cwd=tmp_path,
    )
    assert run.returncode == 4
    assert "check 'darkening': option 'factors'" in run.stderr and "Traceback" not in run.stderr


def test_broken_plugin_is_skipped_with_a_warning(tmp_path):
    dist = tmp_path / "site" / "broken_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[robustcnn.checks]\nbroken = no_such_module:Check\nclean = robustcnn.checks.accuracy.clean:CleanCheck\n"
    )
    listed = cli(tmp_path / "site", "list", cwd=tmp_path)
    checks_section = listed.stdout.split("check families")[0].splitlines()[1:]
    assert listed.returncode == 0 and len(checks_section) == 13
    assert not any(line.split()[0] == "broken" for line in checks_section)
    assert "plugin check 'broken' skipped: no_such_module:Check failed to import" in listed.stderr
    assert "plugin check 'clean' skipped" in listed.stderr and "reuses the name of a built-in check" in listed.stderr

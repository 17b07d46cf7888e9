"""Cost known before the run: every built-in check states its passes, the plan lists them, meta.json
records the estimate next to the measured passes, and --max-minutes stops with a partial report
that --resume finishes (same tables as an uninterrupted run)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from robustcnn.checks import CHECK_PACKAGES, load_registry
from robustcnn.cli import main
from robustcnn.errors import PARTIAL_EXIT
from robustcnn.estimate import CostInputs, Eta, Passes, format_seconds
from robustcnn.results.report import Report

AUDIT = ("audit", "--model", "demo:mnist-cnn", "--data", "digits", "--n", "10", "--seed", "0")


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_every_built_in_check_states_its_passes():
    inputs = CostInputs(n=50, shape=(3, 32, 32), num_classes=10, n_train=400, batch_size=64)
    for name, cls in load_registry().items():
        if not cls.__module__.startswith(tuple(CHECK_PACKAGES)):
            continue  # a plugin may leave it out
        passes = cls().estimate_passes(inputs)
        assert isinstance(passes, Passes), name
        assert 0 <= passes.backward <= passes.forward, name
        assert passes.forward > 0 or name == "dataset-bias", name  # the one check that reads only the data


def test_dry_run_prints_every_selected_check_with_passes_and_writes_nothing(tmp_path):
    out = tmp_path / "report"
    code, text = run(*AUDIT, "--checks", "clean,noise,fooling-gradient,spatial", "--out", str(out), "--dry-run")
    assert code == 0, text
    lines = {line.split()[0]: line.split() for line in text.splitlines() if line.strip()}
    assert lines["noise"][3] == "2,000" and lines["noise"][4] == "0"  # 1000 images of each of 2 kinds
    assert lines["clean"][1:5] == ["10", "1", "10", "0"]
    assert lines["fooling-gradient"][3].startswith("<=")  # stops early where it succeeds
    assert "spatial" in lines and "calibration on cpu" in text and "forward+backward" in text
    assert not out.exists() and not list(tmp_path.iterdir())


def test_meta_records_the_estimate_next_to_the_measured_passes(tmp_path):
    code, text = run(*AUDIT, "--checks", "clean,noise,occlusion", "--out", str(tmp_path / "r"))
    assert code == 0, text
    assert "plan for mnist-cnn" in text and "est. time" in text and "left" in text
    meta = json.loads((tmp_path / "r" / "meta.json").read_text())
    # no selected check needs an input gradient: its pass is not timed (it would raise peak memory)
    assert meta["calibration"]["forward_s"] > 0 and meta["calibration"]["backward_s"] is None
    assert meta["estimated_seconds"] > 0
    checks = meta["checks"]
    # no early stop, and the accuracy the estimate assumes is measured on all 10 images: exact
    for name in ("clean", "noise", "occlusion"):
        assert checks[name]["estimate"]["forward"] == checks[name]["forward"]
        assert checks[name]["estimate"]["backward"] == checks[name]["backward"] == 0


def test_max_minutes_writes_a_partial_report_and_resume_finishes_it(tmp_path):
    checks = ("--checks", "noise,occlusion")
    partial, whole = tmp_path / "partial", tmp_path / "whole"
    code, text = run(*AUDIT, *checks, "--out", str(partial), "--max-minutes", "0")
    assert code == PARTIAL_EXIT, text
    assert "PARTIAL, not run: occlusion" in text
    meta = json.loads((partial / "meta.json").read_text())
    assert meta["status"] == "partial" and meta["stopped"]["checks_not_run"] == ["occlusion"]
    assert meta["checks"]["occlusion"]["status"] == "not run" and "estimate" in meta["checks"]["occlusion"]
    assert "Partial report" in (partial / "summary.md").read_text()
    assert "checks not run: occlusion" in (partial / "report.html").read_text()
    code, text = run("report", "show", str(partial))
    assert code == 0 and "Partial report" in text and "not run" in text
    code, text = run("report", "compare", str(partial), "--out", str(tmp_path / "c.csv"))
    assert code == 4 and "incomplete" in text  # only complete reports are compared or gated
    with pytest.raises(Exception, match="incomplete"):
        Report.load(partial)

    code, text = run(*AUDIT, *checks, "--out", str(partial), "--resume")
    assert code == 0, text
    code, text = run(*AUDIT, *checks, "--out", str(whole))
    assert code == 0, text
    resumed = json.loads((partial / "meta.json").read_text())
    assert resumed["status"] == "complete" and resumed["checks"]["noise"]["resumed_tasks"] == 1
    assert (partial / "results.csv").read_bytes() == (whole / "results.csv").read_bytes()


def test_max_minutes_before_any_check_finished_evaluates_nothing(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text(
        '[model]\nspec = "demo:mnist-cnn"\n[data]\nspec = "digits"\nn = 10\n'
        '[run]\nchecks = ["clean"]\nshard_size = 5\nmax_minutes = 0\n'
    )
    code, text = run("audit", str(plan), "--out", str(tmp_path / "r"))
    assert code == 5 and "before any check finished" in text and "Traceback" not in text
    code, text = run("audit", str(plan), "--out", str(tmp_path / "r"), "--max-minutes", "5", "--resume")
    assert code == 0, text
    meta = json.loads((tmp_path / "r" / "meta.json").read_text())
    assert meta["checks"]["clean"]["resumed_tasks"] == 1


@pytest.mark.parametrize("value", ["-1", "soon"])
def test_a_bad_max_minutes_is_a_usage_error(value):
    code, text = run(*AUDIT, "--max-minutes", value)
    assert code == 2 and "max-minutes" in text


def test_time_left_follows_the_pace_of_the_finished_checks():
    eta = Eta({"a": 100.0, "b": 100.0, "c": None})
    eta.start("a")
    assert eta.remaining() == pytest.approx(200.0)
    eta.fraction = 0.5
    assert eta.remaining() == pytest.approx(150.0)
    eta.finish("a", 200.0)  # twice as slow as estimated: what is left takes longer
    eta.start("b")
    assert 100.0 < eta.remaining() < 200.0
    assert eta.text().endswith("+ ?")  # check c has no estimate
    assert format_seconds(75) == "1 min 15 s" and format_seconds(None) == "?"


def test_calibration_charges_small_calls_more_per_image():
    from robustcnn.estimate import Calibration, CallCost

    cost = CallCost.fit(16, 0.26, 32, 0.42)  # 0.1 s a call plus 0.01 s an image
    assert cost.call == pytest.approx(0.1) and cost.image == pytest.approx(0.01)
    assert cost.per_image(4) == cost.per_image(16) > cost.per_image(64)  # the wrapper pads calls to 16 images
    calibration = Calibration(cost, None, 32, "cpu")
    assert calibration.seconds(Passes(640), 64) == pytest.approx(640 * (0.1 / 64 + 0.01))
    assert calibration.seconds(Passes(640, batch=16), 64) > calibration.seconds(Passes(640), 64)
    assert calibration.to_dict()["backward_s"] is None

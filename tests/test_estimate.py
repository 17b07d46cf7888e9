"""Cost known before the run: every built-in check states its passes, the plan lists them, meta.json
records the estimate next to the measured passes, and --max-minutes stops with a partial report
that --resume finishes (same tables as an uninterrupted run)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner

from robustcnn.checks import CHECK_PACKAGES, load_registry
from robustcnn.cli import main
from robustcnn.errors import PARTIAL_EXIT
from robustcnn.estimate import CostInputs, Eta, Passes, calibrate, estimate, format_seconds
from robustcnn.models import AuditedModel
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
    assert meta["calibration"]["calibration_s"] > 0 and meta["calibration"]["probes_s"] > 0
    assert meta["estimated_seconds"] > 0
    checks = meta["checks"]
    for name in ("clean", "noise", "occlusion"):  # the estimate is model time plus the other work, both recorded
        est = checks[name]["estimate"]
        assert est["seconds"] == pytest.approx(est["model_seconds"] + est["work_seconds"])
        assert checks[name]["seconds"] > 0
    assert "figure" in checks["occlusion"]["estimate"]["work_note"]
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
    assert cost.per_image(16) > cost.per_image(64)
    assert cost.per_image(4) == pytest.approx(4 * cost.per_image(16))  # the wrapper pads calls to 16 images
    calibration = Calibration(cost, None, 32, "cpu")
    assert calibration.seconds_of(Passes(640), 64) == pytest.approx(640 * (0.1 / 64 + 0.01))
    assert calibration.seconds_of(Passes(640, batch=16), 64) > calibration.seconds_of(Passes(640), 64)
    assert calibration.to_dict()["backward_s"] is None


def test_a_sum_of_passes_costs_each_part_at_its_own_call_size():
    from robustcnn.estimate import Calibration, CallCost

    calibration = Calibration(CallCost(0.1, 0.01), CallCost(0.2, 0.03), 32, "cpu")
    few, many = Passes(50, 40, batch=5), Passes(1000, batch=250)
    both = few + many
    assert (both.forward, both.backward) == (1050, 40) and both.terms() == (few, many)
    assert calibration.seconds_of(both, 250) == pytest.approx(
        calibration.seconds_of(few, 250) + calibration.seconds_of(many, 250)
    )
    # 40 gradient images in calls of 5 (padded to 16): 8 calls of 0.2 + 16 * 0.03 s
    assert calibration.seconds_of(Passes(40, 40, batch=5), 250) == pytest.approx(8 * (0.2 + 16 * 0.03))


class _Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.head = torch.nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def calibration():
    torch.manual_seed(0)
    model = AuditedModel(_Tiny(), 10, 3, (16, 16))
    return calibrate(model, torch.rand(8, 3, 16, 16), batch_size=64)


def test_calibration_terms_are_positive_and_finite_and_leave_the_counter_alone(calibration):
    for cost in (calibration.forward, calibration.backward, calibration.probe.weights_backward()):
        assert cost.call >= 0 and cost.image > 0 and math.isfinite(cost.call + cost.image)
    assert calibration.batch == 64  # small images: timed at the run's batch size
    figures = calibration.probe.figures(grids=[1, 10], charts=[2])
    assert figures.seconds > 0 and figures.note == "3 figures"
    assert calibration.probe.figures(grids=[10]).seconds > calibration.probe.figures(grids=[1]).seconds
    assert calibration.probe.model.counter.snapshot() == (0, 0)
    meta = calibration.to_dict()
    assert meta["calibration_s"] > 0 and meta["probes_s"] > 0


def test_every_built_in_check_reports_its_work_besides_model_calls(calibration):
    inputs = CostInputs(n=20, shape=(3, 16, 16), num_classes=10, n_train=0, batch_size=64, accuracy=0.5)
    for name, cls in load_registry().items():
        if not cls.__module__.startswith(tuple(CHECK_PACKAGES)):
            continue
        line = estimate(cls(), inputs, 1, calibration)
        assert line.work is not None, name
        assert line.work.seconds >= 0 and math.isfinite(line.work.seconds), name
        assert line.seconds == pytest.approx(line.model_seconds + line.work.seconds), name
        assert {"model_seconds", "work_seconds"} <= set(line.to_dict()), name


def test_estimates_grow_with_the_images_and_the_options(calibration):
    from robustcnn.checks.natural_shifts.corruptions import CorruptionsCheck
    from robustcnn.checks.natural_shifts.noise import NoiseCheck

    small = CostInputs(n=20, shape=(3, 16, 16), num_classes=10, n_train=0, batch_size=64, accuracy=0.5)
    large = replace(small, n=80)
    adversarial = load_registry()["adversarial"]()
    assert estimate(adversarial, large, 1, calibration).seconds > estimate(adversarial, small, 1, calibration).seconds
    # the attacks' calls hold a shard's correctly classified images (40 in 4 shards); foolbox's (FMN, DDN)
    # also compute the weights' gradients
    parts = adversarial.estimate_passes(replace(large, tasks=4)).terms()
    assert {p.batch for p in parts if p.weights} == {10}
    one = CorruptionsCheck.from_options({"severities": [1]}).estimate_work(small, calibration.probe)
    three = CorruptionsCheck.from_options({"severities": [1, 3, 5]}).estimate_work(small, calibration.probe)
    assert three.seconds > one.seconds
    few = NoiseCheck.from_options({"n": 100}).estimate_work(small, calibration.probe)
    many = NoiseCheck.from_options({"n": 10000}).estimate_work(small, calibration.probe)
    assert many.seconds > few.seconds and "20,000 noise images" in many.note

"""End to end: the API and CLI give the same table; seeds reproduce; resume after SIGKILL."""

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import save_torchscript, small_net, write_image_folder

import robustcnn
from robustcnn.cli import main
from robustcnn.data import stratified_sample

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def user_files(tmp_path_factory, mnist):
    """A TorchScript model and an ImageFolder dataset of our own making, on disk."""
    base = tmp_path_factory.mktemp("user")
    model = save_torchscript(small_net(), base / "model.pt")
    idx = stratified_sample(mnist.test.y, 60, seed=0)
    data = write_image_folder(base / "images", mnist.test.x[idx], mnist.test.y[idx], [str(i) for i in range(10)])
    return model, data


def test_torchscript_on_image_folder_cli_and_python_agree(user_files, tmp_path):
    model, data = user_files
    report = robustcnn.audit(str(model), str(data), checks=["clean"], out=tmp_path / "py", trust_model=True)
    result = CliRunner().invoke(
        main,
        [
            "audit",
            "--model",
            str(model),
            "--trust-model",
            "--data",
            str(data),
            "--checks",
            "clean",
            "--out",
            str(tmp_path / "cli"),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    py = (tmp_path / "py" / "results.csv").read_text()
    assert py == (tmp_path / "cli" / "results.csv").read_text()
    assert report.table["n"].max() == 60
    loaded = robustcnn.load_report(tmp_path / "cli")
    pd.testing.assert_frame_equal(loaded.table, report.table, check_dtype=False)
    assert loaded.meta["model"]["fingerprint"] == report.meta["model"]["fingerprint"]


def test_same_seed_same_results_and_report_files(tmp_path):
    a = robustcnn.audit(checks=["clean"], n=40, out=tmp_path / "a", seed=5)
    robustcnn.audit(checks=["clean"], n=40, out=tmp_path / "b", seed=5)
    assert (tmp_path / "a" / "results.csv").read_bytes() == (tmp_path / "b" / "results.csv").read_bytes()
    for name in ("results.parquet", "samples.parquet", "meta.json", "summary.md", "report.html"):
        assert (tmp_path / "a" / name).exists()
    assert a.meta["schema_version"] == 1 and a.meta["status"] == "complete"
    assert a.meta["checks"]["clean"]["forward"] >= 40
    assert {"model", "check", "metric", "value", "n", "ci_low", "ci_high"} <= set(a.table.columns)
    summary = robustcnn.Report.summaries([a, tmp_path / "b"])
    assert len(summary) == 2 and "clean accuracy" in summary.columns
    side_by_side = robustcnn.Report.compare([a, tmp_path / "b"])
    assert side_by_side.loc[side_by_side["check"] == "clean"].iloc[0, -1] == 0.0

"""Reports side by side: compare_headlines / compare_tables and `robustcnn report compare`."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from test_html_helpers import SCRIPT_CLASS, write_synthetic

from robustcnn.cli import main
from robustcnn.errors import InvalidInputError, UsageError
from robustcnn.reports.compare import compare_headlines, compare_tables, labels_for, write_comparison


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    return [
        write_synthetic(root / "a", model="plain", accuracy=0.9),
        write_synthetic(root / "b", model="shortcut", accuracy=0.6, drop=0.1),
    ]


def test_headlines_side_by_side(reports):
    table = compare_headlines(reports)
    assert list(table.columns) == ["family", "check", "headline", "plain", "shortcut", "Δ shortcut"]
    clean = table.set_index("check").loc["clean"]
    assert (clean["plain"], clean["shortcut"]) == (0.9, 0.6) and clean["Δ shortcut"] == pytest.approx(-0.3)


def test_every_row_aligned_on_its_parameters(reports):
    table = compare_tables(reports)
    row = table[
        (table["metric"] == "robust_accuracy")
        & (table["norm"] == "l2")
        & (table["eps"] == "1")
        & (table["attack"] == "pgd")
        & (table["class"] == "")
    ]
    assert len(row) == 1
    assert row["plain"].item() == pytest.approx(0.4) and row["Δ shortcut"].item() == pytest.approx(-0.1)
    assert len(table) == len(reports[0].table)  # same rows in both: nothing unmatched
    assert SCRIPT_CLASS in set(table["class"])
    only_clean = compare_tables(reports, checks=["clean"])
    assert set(only_clean["check"]) == {"clean"}


def test_rows_missing_in_one_report_stay_empty(reports, tmp_path):
    partial = copy.copy(reports[1])
    partial.table = reports[1].table[reports[1].table["check"] == "clean"]
    table = compare_tables([reports[0], partial])
    assert table.loc[table["check"] == "mystery", "shortcut"].isna().all()


def test_labels_are_distinct(reports):
    assert labels_for([reports[0], reports[0]]) == ["plain (a)", "plain (a)'"]
    with pytest.raises(InvalidInputError):
        compare_headlines([])


def test_write_formats(reports, tmp_path):
    table = compare_tables(reports)
    assert pd.read_csv(write_comparison(table, tmp_path / "c.csv")).shape == table.shape
    assert "&lt;script&gt;" in write_comparison(table, tmp_path / "c.html").read_text()
    assert write_comparison(table, tmp_path / "c.md").read_text().startswith("| check | metric |")
    with pytest.raises(UsageError):
        write_comparison(table, tmp_path / "c.xlsx")


def test_cli_compare_with_a_glob(reports, tmp_path):
    out = tmp_path / "comparison.csv"
    pattern = str(Path(reports[0].path).parent / "*")
    result = CliRunner().invoke(main, ["report", "compare", pattern, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Δ shortcut" in result.output and "clean accuracy" in result.output
    assert "Δ shortcut" in pd.read_csv(out).columns
    missing = CliRunner().invoke(main, ["report", "compare", str(tmp_path / "nope")])
    assert missing.exit_code == 4


def test_cli_compare_skips_what_is_not_a_report(reports, tmp_path):
    root = tmp_path / "reports"
    root.mkdir()
    for report in reports:
        (root / Path(report.path).name).symlink_to(report.path)
    (root / "README.md").write_text("the output root\n")
    (root / "half").mkdir()
    out = tmp_path / "comparison.csv"
    result = CliRunner().invoke(main, ["report", "compare", str(root / "*"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"skipped {root / 'README.md'}" in result.output and f"skipped {root / 'half'}" in result.output
    assert {"plain", "shortcut"} <= set(pd.read_csv(out).columns)

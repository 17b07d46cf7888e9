"""The contract every registered check keeps, plugins included when installed (docs/adding-a-check.md):
its rows fit the long table's schema, one seed gives the same rows, ``--resume`` reuses every
fragment it left, and a bad option value is refused with one line and exit 4.

Each check runs alone on a tiny untrained CNN and a tiny .npz dataset (16x16 gray digits of three
classes, a training split and a group attribute) with small budgets (``TINY``; a check not listed
runs with its defaults).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import small_net, write_npz

from robustcnn import api
from robustcnn.checks import PLUGINS, SampleCheck, load_registry
from robustcnn.cli import main
from robustcnn.results.report import Report
from robustcnn.results.schema import CORE_COLUMNS, PARAM_COLUMNS

CHECKS = list(load_registry())
N = 12
TINY: dict[str, dict] = {
    "adversarial": {"norms": ["linf"], "attacks": ["fgsm", "apgd-ce"], "apgd_steps": 2, "unbounded_images": 0},
    "fooling-gradient": {"steps": 5, "prototype_steps": 5},
    "fooling-evolution": {"population": 8, "generations": 2},
    "noise": {"n": 16},
    "patch": {
        "train_images": 16,
        "epochs": 1,
        "areas": [0.1],
        "shapes": ["square"],
        "pilot_classes": 2,
        "pilot_images": 8,
        "pilot_epochs": 1,
        "examples": 2,
    },
    "occlusion": {"examples": 2},
    "corruptions": {"severities": [5], "corruptions": ["gaussian_noise", "defocus_blur", "contrast", "speckle_noise"]},
    "spatial": {"n_angles": 3, "random_trials": 1, "examples": 2},
    "dataset-bias": {"probe_max_samples": 60},
    "label-issues": {"max_samples": 60, "bootstrap": 5, "folds": 2},
    "groups": {"bootstrap": 5, "min_group_size": 2},
    "confidence": {"noise_n": 16, "fooling_n": 2, "fooling_steps": 3, "adversarial_n": 4, "corruption_n": 8},
}


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory) -> Path:
    """24 evaluation and 60 training 16x16 digits of classes 0-2 (scikit-learn), with a ``stroke``
    attribute (heavy or light ink) for the checks that compare groups."""
    from sklearn.datasets import load_digits

    digits = load_digits(n_class=3)
    x = np.kron(digits.images / 16.0, np.ones((2, 2)))[:, None].astype(np.float32)
    y = digits.target.astype(np.int64)
    ink = x.reshape(len(x), -1).mean(axis=1)
    stroke = np.where(ink > np.median(ink), "heavy", "light")
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    return write_npz(
        path, x[:24], y[:24], x_train=x[24:84], y_train=y[24:84], stroke=stroke[:24], train_stroke=stroke[24:84]
    )


def audit(name: str, data: Path, out: Path, resume: bool = False) -> Report:
    return api.audit(
        model=small_net(1, 3),
        data=str(data),
        checks=[name],
        options={name: TINY.get(name, {})},
        n=N,
        train_n=60,
        seed=0,
        out=out,
        resume=resume,
    )


@pytest.fixture(scope="module")
def first_runs(tiny_npz, tmp_path_factory) -> dict[str, Report]:
    """Each check's first audit, run when a test first asks for it and shared by the tests after."""
    return {}


def first_run(name: str, data: Path, runs: dict[str, Report], tmp: pytest.TempPathFactory) -> Report:
    if name not in runs:
        runs[name] = audit(name, data, tmp.mktemp(name) / "report")
    return runs[name]


@pytest.mark.parametrize("name", CHECKS)
def test_rows_fit_the_long_table_schema(name, tiny_npz, first_runs, tmp_path_factory):
    table = first_run(name, tiny_npz, first_runs, tmp_path_factory).table
    assert list(table.columns[: len(CORE_COLUMNS)]) == CORE_COLUMNS
    rows = table[table["check"] == name]
    assert len(rows), f"{name} produced no rows"
    assert (rows["model"] == "MnistCNN").all()
    assert rows["metric"].map(lambda m: isinstance(m, str) and m != "").all()
    assert rows["value"].dtype == np.float64
    assert (rows["n"].dropna() >= 0).all()
    lows, highs = rows["ci_low"].astype(float), rows["ci_high"].astype(float)
    assert (lows.isna() == highs.isna()).all(), "an interval has one end only"
    assert (lows.dropna() <= highs.dropna() + 1e-12).all()
    params = [c for c in table.columns if c not in CORE_COLUMNS]
    known = [c for c in PARAM_COLUMNS if c in params]
    assert params[: len(known)] == known, "known parameters come first, in the schema's order"
    for col in params:
        assert rows[col].map(_scalar).all(), f"{name}: column {col} holds a non-scalar"
    identity = rows[["metric", *params]].astype(str)
    assert not identity.duplicated().any(), (
        f"{name}: two rows share metric and parameters; a gate cannot tell them apart"
    )
    headline = load_registry()[name]().headline(rows)
    if headline is not None:
        assert headline.better in ("higher", "lower") and headline.kind in ("rate", "value")
        chosen = rows
        for col, wanted in headline.where.items():
            chosen = chosen[chosen[col].astype(str) == str(wanted)]
        assert len(chosen), f"{name}: the headline's where {headline.where} selects no row"


def _scalar(v: object) -> bool:
    return v is None or isinstance(v, (str, bool, int, float, np.integer, np.floating)) or pd.isna(v)


@pytest.mark.parametrize("name", CHECKS)
def test_same_seed_same_rows(name, tiny_npz, first_runs, tmp_path_factory, tmp_path):
    first = first_run(name, tiny_npz, first_runs, tmp_path_factory)
    again = audit(name, tiny_npz, tmp_path / "again")
    pd.testing.assert_frame_equal(first.table, again.table)


@pytest.mark.parametrize("name", CHECKS)
def test_resume_reuses_every_fragment(name, tiny_npz, first_runs, tmp_path_factory, monkeypatch):
    first = first_run(name, tiny_npz, first_runs, tmp_path_factory)
    cls = load_registry()[name]

    def must_not_run(*args, **kwargs):
        raise AssertionError(f"{name} computed on --resume")

    for method in ("run", "measure", "summarize"):
        monkeypatch.setattr(cls, method, must_not_run, raising=False)
    resumed = audit(name, tiny_npz, first.path, resume=True)
    meta = resumed.meta["checks"][name]
    assert meta["resumed_tasks"] == meta["tasks"] + issubclass(cls, SampleCheck)
    pd.testing.assert_frame_equal(first.table, resumed.table)


@pytest.mark.parametrize("name", CHECKS)
def test_a_bad_option_value_is_one_line_and_exit_4(name, tiny_npz, tmp_path):
    fields = dataclasses.fields(load_registry()[name].Config)
    option, value = (fields[0].name, "{ wrong_type = 1 }") if fields else ("no_such_option", "1")
    out = tmp_path / "report"
    args = ["audit", "--data", str(tiny_npz), "--checks", name, "--n", "4", "--out", str(out), "--no-progress"]
    result = CliRunner().invoke(main, [*args, "--set", f"{name}.{option}={value}"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 4, result.output
    assert len(lines) == 1 and name in lines[0] and option in lines[0], result.output
    assert not out.exists()


def test_every_built_in_check_has_tiny_budgets():
    assert set(CHECKS) - set(PLUGINS) - {"clean"} == set(TINY)

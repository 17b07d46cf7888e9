"""A seed gives a byte-identical results.csv: twice, for any shard size and batch size, and after
SIGKILL + --resume, on every per-sample check (clean, adversarial, spatial, corruptions, occlusion)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import robustcnn
from robustcnn.methods.shifts.corruptions import CORRUPTIONS, corrupt
from robustcnn.seeding import SampleStreams

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ["clean", "adversarial", "spatial", "corruptions", "occlusion"]
PLAN = """
[data]
spec = "mnist5k"
n = 30
[run]
seed = 3
batch_size = {batch}
shard_size = {shard}
checks = {checks}
[checks.adversarial]
attacks = ["fmn", "ddn", "apgd-ce", "apgd-t", "apgd-dlr", "square", "pgd"]
fmn_steps = 5
ddn_steps = 5
apgd_steps = 3
apgd_target_steps = 3
apgd_dlr_steps = 5
square_queries = 30
pgd_steps = 3
unbounded_images = 4
[checks.spatial]
n_angles = 5
n_translations = 3
random_trials = 4
[checks.corruptions]
severities = [2, 5]
"""


def _plan(tmp: Path, shard: int, batch: int) -> Path:
    path = tmp / f"plan-{shard}-{batch}.toml"
    path.write_text(PLAN.format(shard=shard, batch=batch, checks=str(CHECKS).replace("'", '"')))
    return path


def _run(tmp: Path, name: str, shard: int, batch: int) -> bytes:
    out = tmp / name
    robustcnn.audit(plan=_plan(tmp, shard, batch), out=out)
    return (out / "results.csv").read_bytes()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> bytes:
    """Shard size 250 (one shard), batch size 64."""
    return _run(tmp_path_factory.mktemp("reference"), "ref", 250, 64)


def test_reference_covers_every_per_sample_check(reference, tmp_path):
    (tmp_path / "r.csv").write_bytes(reference)
    table = pd.read_csv(tmp_path / "r.csv")
    assert set(CHECKS) <= set(table["check"])
    assert not (table["metric"] == "attack_seconds").any()
    random = table[(table["check"] == "spatial") & (table["transform"].astype(str) == "random-4")]
    assert len(random) and len(table[table["check"] == "corruptions"]) > 40


def test_same_seed_twice(reference, tmp_path):
    assert _run(tmp_path, "again", 250, 64) == reference


@pytest.mark.parametrize(("shard", "batch"), [(25, 64), (7, 64), (250, 7)])
def test_shard_and_batch_size_do_not_change_a_number(reference, tmp_path, shard, batch):
    assert _run(tmp_path, "other", shard, batch) == reference


def test_another_seed_changes_the_random_rows(reference, tmp_path):
    plan = _plan(tmp_path, 250, 64)
    plan.write_text(plan.read_text().replace("seed = 3", "seed = 4"))
    robustcnn.audit(plan=plan, out=tmp_path / "seed4")
    assert (tmp_path / "seed4" / "results.csv").read_bytes() != reference


def test_resume_after_sigkill_is_byte_identical(reference, tmp_path):
    plan = _plan(tmp_path, 7, 7)
    out = tmp_path / "killed"
    # the same torch threads as the reference run, which a BLAS may split its sums by
    code = f"import torch; torch.set_num_threads({torch.get_num_threads()}); from robustcnn.cli import main; main()"
    cmd = [sys.executable, "-c", code, "audit", str(plan), "--out", str(out), "--no-progress"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    # clean has 5 shards and a summary; stop inside the adversarial check
    while time.time() < deadline and _finished_fragments(out) < 8:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "meta.json").exists(), "the run finished before it could be killed"
    with pytest.raises(robustcnn.errors.InvalidInputError):  # a killed run leaves no report that loads
        robustcnn.load_report(out)
    resumed = subprocess.run([*cmd, "--resume"], env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert robustcnn.load_report(out).meta["checks"]["adversarial"]["resumed_tasks"] >= 1
    assert (out / "results.csv").read_bytes() == reference


def _finished_fragments(out: Path) -> int:
    """Completed fragments of the run writing ``out``, in ``out`` or in a staging folder beside it."""
    return sum(1 for p in out.parent.glob(f"*{out.name}*/.fragments/*") if not p.name.startswith("."))


def test_streams_follow_the_sample_not_the_batch():
    ids = [f"img{i}" for i in range(9)]
    whole = SampleStreams.for_ids(0, ids, "salt")
    alone = SampleStreams.for_ids(0, ids[4:5], "salt")
    for draw in ("uniform", "normal"):
        assert torch.equal(getattr(whole, draw)((3, 2))[4], getattr(alone, draw)((3, 2))[0])
    assert torch.equal(whole.integers(0, 5, (7,))[4], alone.integers(0, 5, (7,))[0])
    later = whole.subset(torch.tensor([2, 4]))
    assert torch.equal(later.uniform(())[1], alone.uniform(())[0])
    assert not torch.equal(whole.uniform((4,))[0], SampleStreams.for_ids(1, ids, "salt").uniform((4,))[0])


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_a_corruption_of_an_image_does_not_depend_on_its_batch(name):
    x = torch.rand(5, 3, 20, 20, generator=torch.Generator().manual_seed(0))
    ids = [str(i) for i in range(5)]
    batch = corrupt(x, name, 5, SampleStreams.for_ids(0, ids, name))
    single = corrupt(x[3:4], name, 5, SampleStreams.for_ids(0, ids[3:4], name))
    assert torch.equal(batch[3:4], single)

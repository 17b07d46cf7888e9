"""Same tables whichever executor, worker count or shard split runs an audit; faults and bad input.

Two demo models, a per-sample check split in shards (``clean``, ``adversarial``) and a check that
reads another's artifacts (``confidence`` reads the adversarial examples); results.csv and the
per-sample table must be byte-identical. Ray runs twice: a local runtime the audit starts with
2 CPUs, and a ``ray start --head`` process (one per module, ``ray_head``) joined by address.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from robustcnn.checks.accuracy.clean import CleanCheck
from robustcnn.cli import main
from robustcnn.executors import Job, WorkerLostError, make_engine
from robustcnn.plan import load_plan
from robustcnn.runner import plan_model, run_plan

PLAN = """
[[model]]
spec = "demo:mnist-cnn"
[[model]]
spec = "demo:mnist-lenet"
[data]
spec = "digits"
n = 16
[run]
checks = ["clean", "adversarial", "confidence"]
shard_size = 8
[checks.adversarial]
attacks = ["fgsm"]
norms = ["linf"]
survivor_attacks = []
unbounded_images = 4
[checks.confidence]
sets = ["adversarial", "gaussian-noise"]
scores = ["msp"]
generate_missing = false
noise_n = 16
max_per_set = 16
odtest = false
"""
MODELS = ("mnist-cnn", "mnist-lenet")


def tables(root: Path) -> dict[str, bytes]:
    """results.csv of each model, byte for byte, and its per-sample table."""
    return {
        model: (root / model / "results.csv").read_bytes()
        + pd.read_parquet(root / model / "samples.parquet").to_csv().encode()
        for model in MODELS
    }


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plan") / "plan.toml"
    path.write_text(PLAN)
    return path


@pytest.fixture(scope="module")
def local(plan_file, tmp_path_factory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("local") / "out"
    result = CliRunner().invoke(main, ["audit", str(plan_file), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    found = tables(out)
    assert all(b"confidence,auroc" in t and b"adversarial" in t for t in found.values())
    return found


def audit_with(plan_file: Path, out: Path, engine) -> dict[str, str]:
    plan = load_plan(plan_file).with_overrides(out=str(out))
    try:
        run_plan(plan, engine=engine)
    finally:
        engine.close()
    return tables(out)


def test_processes_match_local(local, plan_file, tmp_path):
    assert audit_with(plan_file, tmp_path / "out", make_engine("processes", workers=2)) == local


def test_shards_and_merge_match_local(local, plan_file, tmp_path):
    runner = CliRunner()
    folders = []
    for i in (1, 2, 3):
        folder = tmp_path / f"shard{i}"
        result = runner.invoke(main, ["audit", str(plan_file), "--shard", f"{i}/3", "--out", str(folder)])
        assert result.exit_code == 0, result.output
        folders.append(str(folder))
    # a missing slice is named; nothing is written
    result = runner.invoke(main, ["merge", *folders[:2], "--out", str(tmp_path / "merged")])
    assert result.exit_code == 4 and "3/3 missing" in result.output and not (tmp_path / "merged").exists()
    result = runner.invoke(main, ["merge", *folders, "--out", str(tmp_path / "merged")])
    assert result.exit_code == 0, result.output
    assert tables(tmp_path / "merged") == local
    assert (tmp_path / "merged" / "index.html").exists()


def test_merge_refuses_shards_of_another_plan(plan_file, tmp_path):
    other = tmp_path / "other.toml"
    other.write_text(
        PLAN.replace("n = 16", "n = 8").replace('checks = ["clean", "adversarial", "confidence"]', 'checks = ["clean"]')
    )
    runner = CliRunner()
    a = runner.invoke(main, ["audit", str(other), "--shard", "1/2", "--out", str(tmp_path / "a")])
    b = runner.invoke(main, ["audit", str(other), "--shard", "2/2", "--out", str(tmp_path / "b")])
    plan = other.read_text().replace("n = 8", "n = 10")
    other.write_text(plan)
    c = runner.invoke(main, ["audit", str(other), "--shard", "2/2", "--out", str(tmp_path / "c")])
    assert a.exit_code == b.exit_code == c.exit_code == 0, a.output + b.output + c.output
    result = runner.invoke(main, ["merge", str(tmp_path / "a"), str(tmp_path / "c"), "--out", str(tmp_path / "m")])
    assert result.exit_code == 4 and "different plans" in result.output and not (tmp_path / "m").exists()
    (tmp_path / "b" / "shard.json").write_text(
        (tmp_path / "b" / "shard.json").read_text().replace('"robustcnn_version": "', '"robustcnn_version": "0.0.0-')
    )
    result = runner.invoke(main, ["merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "m")])
    assert result.exit_code == 4 and "robustcnn versions" in result.output and not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    "args, code, text",
    [
        (["--executor", "spark"], 2, "unknown executor 'spark'"),
        (["--shard", "4/3"], 2, "--shard takes I/N"),
        (["--shard", "0/3"], 2, "--shard takes I/N"),
        (["--ray-address", "127.0.0.1:1"], 2, "--ray-address needs --executor ray"),
    ],
)
def test_bad_executor_input_is_one_line(args, code, text, tmp_path):
    result = CliRunner().invoke(main, ["audit", "--checks", "clean", "--n", "8", "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == code and text in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_ray_address_that_does_not_answer(tmp_path):
    pytest.importorskip("ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    result = CliRunner().invoke(
        main,
        [
            "audit",
            "--checks",
            "clean",
            "--n",
            "8",
            "--out",
            str(tmp_path / "o"),
            "--executor",
            "ray",
            "--ray-address",
            f"127.0.0.1:{port}",
        ],
    )
    assert result.exit_code == 4 and "no Ray cluster answers" in result.output
    assert time.monotonic() - started < 30 and not (tmp_path / "o").exists()


def test_ray_not_installed_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    result = CliRunner().invoke(
        main, ["audit", "--checks", "clean", "--n", "8", "--out", str(tmp_path / "o"), "--executor", "ray"]
    )
    assert result.exit_code == 4 and "pip install robustcnn[ray]" in result.output


class KillOnce(CleanCheck):
    """``clean``, except that the worker process running it is SIGKILLed while it works on the
    first attempt (``always``: on every attempt)."""

    def __init__(self, marker: str, always: bool = False) -> None:
        super().__init__()
        self.marker, self.always = marker, always

    def measure(self, model, batch, ctx):
        if self.always or not os.path.exists(self.marker):
            Path(self.marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return super().measure(model, batch, ctx)


@pytest.fixture(scope="module")
def one_task(plan_file):
    plan = load_plan(plan_file)
    plan.checks = ["clean"]
    _, prepared, tasks = plan_model(plan, plan.models[0])
    job = Job.of(plan, plan.models[0])
    return job, prepared, tasks["clean"][0]


def test_killed_worker_is_retried(one_task, tmp_path):
    from robustcnn.checks import CheckContext
    from robustcnn.runner import run_task

    job, prepared, task = one_task
    engine = make_engine("processes", workers=1)
    try:
        output, _ = engine.submit(job, KillOnce(str(tmp_path / "m")), task, CheckContext(), prepared).result()
    finally:
        engine.close()
    expected, _ = run_task(task, CleanCheck(), prepared, CheckContext())
    assert (tmp_path / "m").exists()
    assert output.samples.equals(expected.samples)


def test_worker_killed_every_time_names_the_task(one_task, tmp_path):
    from robustcnn.checks import CheckContext

    job, prepared, task = one_task
    engine = make_engine("processes", workers=1)
    try:
        with pytest.raises(WorkerLostError, match=f"check clean, shard 0 \\(task {task.key}\\)"):
            engine.submit(job, KillOnce(str(tmp_path / "m"), always=True), task, CheckContext(), prepared).result()
    finally:
        engine.close()


def test_ray_local_runtime_matches_local(local, plan_file, ray_head, tmp_path):
    """Without --ray-address a local runtime starts, also while a `ray start` cluster runs here (``ray_head``)."""
    result = CliRunner().invoke(
        main,
        [
            "audit",
            str(plan_file),
            "--out",
            str(tmp_path / "out"),
            "--no-progress",
            "--executor",
            "ray",
            "--workers",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert tables(tmp_path / "out") == local


@pytest.fixture(scope="module")
def ray_head():
    """A Ray cluster in its own processes (``ray start --head``, 2 CPUs); its address."""
    pytest.importorskip("ray")
    ray_bin = Path(sys.executable).parent / "ray"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    start = [str(ray_bin), "start", "--head", "--num-cpus", "2", "--port", str(port), "--include-dashboard=false"]
    subprocess.run([*start, "--disable-usage-stats"], check=True, env=env, capture_output=True)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(ray_bin), "stop"], check=False, env=env, capture_output=True)


def test_ray_cluster_by_address_matches_local(local, plan_file, ray_head, tmp_path):
    args = ["audit", str(plan_file), "--out", str(tmp_path / "out"), "--no-progress", "--executor", "ray"]
    result = CliRunner().invoke(main, [*args, "--ray-address", ray_head])
    assert result.exit_code == 0, result.output
    assert tables(tmp_path / "out") == local


def test_one_ray_actor_serves_every_model(local, plan_file, ray_head, tmp_path):
    """Fewer actors than models: the pool's one actor runs both models' tasks, and the tables stay the same."""
    engine = make_engine("ray", ray_address=ray_head, workers=1)
    pids = engine.worker_pids()
    assert len(pids) == 1
    plan = load_plan(plan_file).with_overrides(out=str(tmp_path / "out"))
    try:
        run_plan(plan, engine=engine)
        assert engine.worker_pids() == pids
    finally:
        engine.close()
    assert tables(tmp_path / "out") == local


def test_killed_ray_worker_is_retried(one_task, ray_head, tmp_path):
    """SIGKILL the actor's process mid-task: Ray restarts the actor and runs the task again."""
    from robustcnn.checks import CheckContext
    from robustcnn.runner import run_task

    job, prepared, task = one_task
    engine = make_engine("ray", ray_address=ray_head)
    try:
        output, _ = engine.submit(job, KillOnce(str(tmp_path / "m")), task, CheckContext(), prepared).result()
    finally:
        engine.close()
    expected, _ = run_task(task, CleanCheck(), prepared, CheckContext())
    assert (tmp_path / "m").exists() and output.samples.equals(expected.samples)


def finished(fragments: Path) -> list[str]:
    """The fragments in a staging folder that a resume finds complete. A fragment is written in a
    ``.KEY.tmpPID`` folder, info.json last, then renamed to ``KEY``; pathlib's ``*`` matches that
    dot-name too, and a run killed between the two steps leaves it, unfinished (a resume removes it)."""
    return [p.parent.name for p in fragments.glob("[!.]*/info.json")]


@pytest.mark.parametrize("stop", ["ctrl-c", "kill-driver"])
def test_interrupted_run_stops_workers_and_resume_computes_only_the_rest(stop, plan_file, tmp_path):
    """Ctrl-C (SIGINT to the process group) or SIGKILL of the driver mid-run: no report presented as
    complete, no worker left; --resume reuses every finished fragment and computes only the rest."""
    out = tmp_path / "out"
    args = [sys.executable, "-m", "robustcnn", "audit", str(plan_file), "--out", str(out), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    log = tmp_path / "log"  # a file, not a pipe: orphaned workers would hold a pipe open
    # a shell's background job ignores SIGINT and children inherit that: give the driver the terminal's default
    proc = subprocess.Popen(
        [*args, "--executor", "processes", "--workers", "2"],
        env=env,
        start_new_session=True,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    staged = [out / f".{m}.robustcnn-staging" / ".fragments" for m in MODELS]
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not any(finished(f) for f in staged):
        time.sleep(0.2)
    assert proc.poll() is None, log.read_text()
    if stop == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
    else:
        os.kill(proc.pid, signal.SIGKILL)  # the driver alone: its workers must notice and end
    proc.wait(timeout=120)
    assert proc.returncode == (130 if stop == "ctrl-c" else -signal.SIGKILL), log.read_text()
    assert not any((out / m / "meta.json").exists() for m in MODELS)
    deadline = time.monotonic() + 30  # the pool's helper processes (e.g. its resource tracker) end on their own
    while subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, check=False).returncode == 0:
        assert time.monotonic() < deadline, "processes of the interrupted run are still alive"
        time.sleep(0.2)
    kept = sum(len(finished(f)) for f in staged)
    assert kept >= 1
    done = subprocess.run([*args, "--resume"], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    metas = [json.loads((out / m / "meta.json").read_text()) for m in MODELS]
    assert all(meta["status"] == "complete" for meta in metas)
    resumed = sum(c["resumed_tasks"] for meta in metas for c in meta["checks"].values())
    assert resumed == kept, (resumed, kept)  # every finished fragment is reused, and only those


def test_ray_is_imported_only_for_the_ray_executor():
    code = "import sys, robustcnn.cli, robustcnn.runner, robustcnn.sharding; assert 'ray' not in sys.modules"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True)

"""Bad inputs and hostile environments: each case checks the exit code, that stderr is one line
without a traceback, and what ``--out`` holds afterwards (nothing, the untouched earlier state,
or a complete report), with no temporary file left anywhere."""

from __future__ import annotations

import builtins
import errno
import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import robustcnn
from robustcnn.cli import main
from robustcnn.results.writer import INCOMPLETE, staging_path

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--data", "digits", "--n", "20", "--checks", "clean", "--no-progress"]


def cli(*args: str):
    return CliRunner().invoke(main, ["audit", *TINY, *args] if args[:1] != ("--raw",) else list(args[1:]))


def assert_one_line(result, code: int, match: str) -> str:
    """The exit code, and stderr: exactly one line, containing ``match``, no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert len(lines) == 1, result.stderr
    assert match in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(root: Path) -> list[str]:
    """Temporary files and staging folders anywhere under ``root``."""
    return [str(p) for p in root.rglob("*") if ".tmp" in p.name or p.name.endswith(".robustcnn-staging")]


def is_complete(out: Path) -> bool:
    return json.loads((out / "meta.json").read_text()).get("status") == "complete"


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """One complete report of the tiny audit, to copy where a case needs an earlier report."""
    out = tmp_path_factory.mktemp("report") / "r"
    result = cli("--out", str(out))
    assert result.exit_code == 0, result.stderr
    return out


# --- values: refused before anything is written ------------------------------------------------

VALUES = [
    (["--seed", "-1"], 4, "seed must be an integer from 0 to 4294967295, got -1"),
    (["--seed", str(10**22)], 4, "seed must be an integer from 0 to 4294967295"),
    (["--seed", str(2**32)], 4, "seed must be an integer from 0"),
    (["--seed", "abc"], 2, "--seed"),
    (["--input-size", "0x0"], 4, "input size must be two positive integers HxW, e.g. 224x224, got 0x0"),
    (["--input-size", "-3x28"], 4, "got -3x28"),
    (["--input-size", "28"], 2, "--input-size takes HxW"),
    (["--input-size", "1x2x3"], 2, "--input-size takes HxW"),
    (["--mean", "nan"], 4, "mean must be finite numbers"),
    (["--mean", "inf"], 4, "mean must be finite numbers"),
    (["--mean", ""], 2, "--mean takes comma-separated numbers"),
    (["--std", "0"], 4, "std values must be positive"),
    (["--std", "-1"], 4, "std values must be positive"),
    (["--std", "nan"], 4, "std must be finite numbers"),
    (["--n", "0"], 2, "--n"),
    (["--n", "-5"], 2, "--n"),
    (["--batch-size", "0"], 2, "--batch-size"),
    (["--num-classes", "1"], 2, "--num-classes"),
    (["--channels", "0"], 2, "--channels"),
    (["--name", "../escape"], 4, "must be a plain folder name"),
    (["--name", "a/b"], 4, "must be a plain folder name"),
    (["--device", "tpu"], 2, "unknown device 'tpu'"),
    (["--device", "cuda:x"], 2, "unknown device 'cuda:x'"),
    (["--checks", ""], 4, "selects no checks"),
    (["--checks", "clean,clean"], 4, "listed twice"),
    (["--checks", "clean,nonsense"], 4, "unknown check 'nonsense'"),
    (["--set", "clean.bogus=1"], 4, "check 'clean' has no option 'bogus'"),
    (["--set", "novalue"], 2, "--set takes CHECK.KEY=VALUE"),
    (["--model", "missing.pt"], 4, "model file not found"),
    (["--data", "no-such-dataset.npz"], 4, "not found"),
]


@pytest.mark.parametrize("args,code,match", VALUES, ids=[" ".join(v[0]) or "empty" for v in VALUES])
def test_bad_value(tmp_path, args, code, match):
    out = tmp_path / "r"
    assert_one_line(cli("--out", str(out), *args), code, match)
    assert not out.exists() and not leftovers(tmp_path)


PLANS = [
    ('[run]\nseed = "abc"\n', "[run] seed must be an integer from 0 to 4294967295, got 'abc'"),
    ("[run]\nseed = -3\n", "seed must be an integer from 0"),
    ('[run]\nchecks = "clean"\n', "[run] checks must be a list of check names"),
    ("[run]\nbatch_size = 1.5\n", "[run] batch_size must be a positive integer, got 1.5"),
    ("[run]\nshard_size = 0\n", "shard_size must be a positive integer, got 0"),
    ("[data]\nn = true\n", "[data] n must be a positive integer, got True"),
    ('[model]\nspec = "demo:mnist-cnn"\ninput_size = 5\n', "[model] input_size must be [height, width], got 5"),
    ('[model]\nspec = "demo:mnist-cnn"\ninput_size = [0, 28]\n', "input size must be two positive integers"),
    ('[model]\nspec = "demo:mnist-cnn"\nmean = ["a"]\n', "mean must be finite numbers"),
    ('[model]\nspec = "demo:mnist-cnn"\nstd = [nan]\n', "std must be finite numbers"),
    ('[model]\nspec = "demo:mnist-cnn"\ntrust_model = "yes"\n', "[model] trust_model must be true or false"),
    ("[model]\nspec = 3\n", "[model] spec must be a model path or demo:NAME, got 3"),
    ("gate = 5\n", "the policy holds no gate"),
    ("[run]\nout = 7\n", "[run] out must be a folder path, got 7"),
]


@pytest.mark.parametrize("text,match", PLANS, ids=[p[0].strip().replace("\n", " ") for p in PLANS])
def test_bad_plan_value(tmp_path, text, match):
    plan = tmp_path / "plan.toml"
    plan.write_text(text)
    out = tmp_path / "r"
    assert_one_line(cli("--raw", "audit", str(plan), "--out", str(out), "--no-progress"), 4, match)
    assert not out.exists() and not leftovers(tmp_path)


def test_labels_outside_the_classes_name_the_label(tmp_path):
    x = np.zeros((4, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "neg.npz", x=x, y=np.array([0, 1, -1, 42]))
    result = cli("--data", str(tmp_path / "neg.npz"), "--n", "4", "--out", str(tmp_path / "a"))
    assert_one_line(result, 4, "labels must be class indices 0, 1, ...; found -1")
    np.savez(tmp_path / "named.npz", x=x, y=np.array([0, 1, 2, 42]), classes=np.array(["a", "b", "c"]))
    assert_one_line(
        cli("--data", str(tmp_path / "named.npz"), "--n", "4", "--out", str(tmp_path / "c")),
        4,
        "label 42 has no class name; 'classes' lists 3 (labels 0..2)",
    )
    np.savez(tmp_path / "many.npz", x=x, y=np.array([0, 1, 2, 42]), classes=np.array([str(i) for i in range(50)]))
    assert_one_line(
        cli("--data", str(tmp_path / "many.npz"), "--n", "4", "--out", str(tmp_path / "b")),
        4,
        "dataset labels reach 42 but the model has 10 classes",
    )
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not leftovers(tmp_path)


def test_n_larger_than_the_dataset_is_a_notice(tmp_path):
    out = tmp_path / "r"
    notice = "--n 5000 is more than the 450 test images of digits; evaluating all 450"
    assert_one_line(cli("--out", str(out), "--n", "5000"), 0, notice)
    assert robustcnn.load_report(out).meta["data"]["eval_n"] == 450


def test_input_size_is_used_not_ignored(tmp_path):
    from helpers import save_torchscript, small_net

    model = save_torchscript(small_net(), tmp_path / "m.pt")
    result = cli("--model", str(model), "--trust-model", "--input-size", "12x12", "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.stderr
    assert robustcnn.load_report(tmp_path / "r").meta["model"]["input_size"] == [12, 12]


# --- where the report goes ------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["/proc/robustcnn-report", "/proc/self/robustcnn-report", "/sys/robustcnn-report"])
def test_out_on_a_kernel_file_system(target):
    assert_one_line(cli("--out", target), 4, "a kernel file system, not a disk; choose a path on disk")


def test_out_is_a_file_or_under_one(tmp_path):
    (tmp_path / "file").write_text("mine")
    assert_one_line(cli("--out", str(tmp_path / "file")), 2, "is a file")
    assert_one_line(cli("--out", str(tmp_path / "file" / "sub")), 4, "not a directory (ENOTDIR)")
    assert (tmp_path / "file").read_text() == "mine" and not leftovers(tmp_path)


def user_folder(root: Path, clash: bool = False) -> Path:
    (root / "figures").mkdir(parents=True)
    (root / "figures" / "holiday.png").write_bytes(b"not robustcnn's")
    (root / "notes.txt").write_text("my notes")
    if clash:
        (root / "results.csv").write_text("my results")
    return root


def test_non_report_out_is_refused_without_force(tmp_path):
    out = tmp_path / "mine"
    before = snapshot(user_folder(out))
    message = (
        "is not empty and is not a robustcnn report (figures, notes.txt); choose a new or empty folder, or pass --force"
    )
    assert_one_line(cli("--out", str(out)), 4, message)
    assert snapshot(out) == before and not leftovers(tmp_path)


def test_force_writes_beside_user_files_and_never_over_them(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    result = cli("--out", str(out), "--force")
    assert result.exit_code == 0, result.stderr
    assert (out / "notes.txt").read_text() == "my notes" and is_complete(out)
    assert not leftovers(tmp_path)
    clashing = tmp_path / "clash"
    before = snapshot(user_folder(clashing, clash=True))
    message = "already holds figures, results.csv, which robustcnn did not write"
    assert_one_line(cli("--out", str(clashing), "--force"), 4, message)
    assert snapshot(clashing) == before and not leftovers(tmp_path)


def test_a_user_file_where_the_new_report_goes_is_never_replaced(tmp_path, report, monkeypatch):
    out = tmp_path / "r"
    shutil.copytree(report, out)
    (out / "figures" / "clean").mkdir(parents=True)
    (out / "figures" / "clean" / "confusion.png").write_bytes(b"user")
    before = snapshot(out)
    from robustcnn.checks.accuracy.clean import CleanCheck

    real = CleanCheck.summarize

    def with_figure(self, *args, **kwargs):
        output = real(self, *args, **kwargs)
        output.figures = {"confusion": b"png"}
        return output

    monkeypatch.setattr(CleanCheck, "summarize", with_figure)
    message = "holds figures/clean/confusion.png, which robustcnn did not write and would replace"
    assert_one_line(cli("--out", str(out), "--seed", "2"), 4, message)
    assert snapshot(out) == before and not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]


@pytest.mark.skipif(sys.platform == "win32", reason="advisory locks are POSIX only")
def test_a_second_run_on_the_same_out_is_refused(tmp_path):
    import fcntl

    out = tmp_path / "r"
    staging = staging_path(out)
    staging.mkdir()
    (staging / ".robustcnn-staging").write_text("{}")
    (staging / ".fragments").mkdir()
    (staging / ".fragments" / "finished").mkdir()
    before = snapshot(staging)
    with open(staging / ".robustcnn-staging") as held:  # what the first run holds while it works
        fcntl.flock(held, fcntl.LOCK_EX)
        assert_one_line(cli("--out", str(out)), 4, f"another robustcnn run is writing {out}; wait for it to finish")
    assert snapshot(staging) == before and (staging / ".fragments" / "finished").is_dir() and not out.exists()


def test_a_staging_folder_robustcnn_did_not_make_is_refused(tmp_path):
    out = tmp_path / "r"
    staging = staging_path(out)
    staging.mkdir()
    (staging / "keep.txt").write_text("mine")
    assert_one_line(cli("--out", str(out)), 4, "exists and was not made by robustcnn")
    assert (staging / "keep.txt").read_text() == "mine" and not out.exists()


def test_overwriting_a_report_replaces_only_its_own_files(tmp_path, report):
    out = tmp_path / "r"
    shutil.copytree(report, out)
    meta = json.loads((out / "meta.json").read_text())
    (out / "figures" / "old").mkdir(parents=True)
    (out / "figures" / "old" / "gone.png").write_bytes(b"robustcnn wrote this")
    meta["files"].append("figures/old/gone.png")
    (out / "meta.json").write_text(json.dumps(meta))
    (out / "figures" / "mine.png").write_bytes(b"user")
    (out / "notes.txt").write_text("user")
    result = cli("--out", str(out), "--seed", "3")
    assert result.exit_code == 0, result.stderr
    assert (out / "notes.txt").read_text() == "user" and (out / "figures" / "mine.png").read_bytes() == b"user"
    assert not (out / "figures" / "old").exists()
    assert robustcnn.load_report(out).meta["seed"] == 3 and not leftovers(tmp_path)


def test_out_given_as_dot(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("--out", ".")
    assert result.exit_code == 0, result.stderr
    assert is_complete(tmp_path) and not leftovers(tmp_path.parent / tmp_path.name)


# --- the file system refuses: simulated in-process (root ignores chmod), then for real -------------


def refuse(monkeypatch, root: Path, code: int, after: int = 0) -> None:
    """Make every write under ``root`` fail with ``code`` (after ``after`` successful ones), as a
    full, read-only or forbidden disk does: mkdir, open for writing, write_bytes/text, rename."""
    real_open, real_mkdir, real_rename, real_replace = builtins.open, Path.mkdir, os.rename, os.replace
    budget = [after]

    def hit(path) -> bool:
        if not str(os.path.abspath(path)).startswith(str(root)):
            return False
        budget[0] -= 1
        return budget[0] < 0

    def fail(path):
        raise OSError(code, os.strerror(code), str(path))

    def fake_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, Path)) and any(c in mode for c in "wax+") and hit(file):
            fail(file)
        return real_open(file, mode, *args, **kwargs)

    def fake_mkdir(self, *args, **kwargs):
        if hit(self):
            fail(self)
        return real_mkdir(self, *args, **kwargs)

    def fake_move(real):
        def move(src, dst, *args, **kwargs):
            if hit(dst):
                fail(dst)
            return real(src, dst, *args, **kwargs)

        return move

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)  # what Path.write_text and write_bytes call
    monkeypatch.setattr(Path, "mkdir", fake_mkdir)
    monkeypatch.setattr(os, "rename", fake_move(real_rename))
    monkeypatch.setattr(os, "replace", fake_move(real_replace))


REFUSALS = [  # after N writes: 0 the staging folder, 1 its marker, 8 a fragment, 17 the report files, 22 the swap
    (errno.EACCES, 0, "permission denied (EACCES); fix its permissions or choose another --out"),
    (errno.EROFS, 0, "read-only file system (EROFS); choose a --out on a writable disk"),
    (errno.ENOSPC, 1, "no space left on the device (ENOSPC); free some space or choose a --out on another disk"),
    (errno.ENOSPC, 8, "no space left on the device (ENOSPC)"),
    (errno.EDQUOT, 17, "disk quota exceeded (EDQUOT)"),
    (errno.EIO, 22, "input/output error (EIO)"),
]


@pytest.mark.parametrize("code,after,match", REFUSALS, ids=[f"{errno.errorcode[c]}-after-{a}" for c, a, _ in REFUSALS])
def test_refusing_file_system_new_out(tmp_path, monkeypatch, code, after, match):
    out = tmp_path / "disk" / "r"
    out.parent.mkdir()
    refuse(monkeypatch, out.parent, code, after)
    assert_one_line(cli("--out", str(out)), 4, match)
    monkeypatch.undo()
    assert not out.exists()
    staging = staging_path(out)
    assert not staging.exists() or {p.name for p in staging.iterdir()} <= {".fragments", ".robustcnn-staging"}
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]


@pytest.mark.parametrize("after", [0, 9, 23, 27, 35])  # staging, fragments, the INCOMPLETE marker, mid-swap
def test_full_disk_over_an_earlier_report_keeps_it_whole(tmp_path, monkeypatch, report, after):
    out = tmp_path / "r"
    shutil.copytree(report, out)
    before = snapshot(out)
    refuse(monkeypatch, tmp_path, errno.ENOSPC, after)
    assert_one_line(cli("--out", str(out), "--seed", "4"), 4, "no space left on the device")
    monkeypatch.undo()
    after_files = snapshot(out)
    if (out / "meta.json").exists():  # the failure came before the swap: the earlier report, whole
        assert {k: v for k, v in after_files.items() if not k.startswith(".fragments")} == {
            k: v for k, v in before.items() if not k.startswith(".fragments")
        }
    else:  # during the swap: marked incomplete, and a reader is refused
        assert (out / INCOMPLETE).exists()
        with pytest.raises(robustcnn.errors.InvalidInputError):
            robustcnn.load_report(out)
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]


def test_crash_during_the_swap_marks_incomplete_and_resume_finishes(tmp_path, monkeypatch, report):
    out = tmp_path / "r"
    shutil.copytree(report, out)
    real_replace = os.replace
    calls = []

    def replace_then_crash(src, dst, *args, **kwargs):
        if str(dst).startswith(str(out) + os.sep) and not str(dst).startswith(str(staging_path(out))):
            calls.append(dst)
            if len(calls) == 2:
                raise OSError(errno.EIO, os.strerror(errno.EIO), str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace_then_crash)
    assert_one_line(cli("--out", str(out), "--seed", "5"), 4, "input/output error")
    monkeypatch.undo()
    assert (out / INCOMPLETE).exists() and not (out / "meta.json").exists()
    assert "incomplete" in (out / INCOMPLETE).read_text()
    assert not (out / "summary.md").exists() and not (out / "report.html").exists()
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
    result = cli("--out", str(out), "--seed", "5", "--resume")
    assert result.exit_code == 0, result.stderr
    assert not (out / INCOMPLETE).exists() and is_complete(out) and not leftovers(tmp_path)


def _run_cli(args: list[str], prefix: list[str], tmp: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLCONFIGDIR": str(tmp / "mpl")}
    code = "from robustcnn.cli import main; main()"
    command = [*prefix, sys.executable, "-c", code, "audit", *TINY, *args]
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def _can(prefix: list[str]) -> bool:
    if shutil.which(prefix[0]) is None:
        return False
    return subprocess.run([*prefix, "true"], capture_output=True, check=False).returncode == 0


def test_real_permission_denied(tmp_path):
    """chmod stops writes for a normal user; root is stopped only inside a user namespace."""
    prefix = ["unshare", "--user"] if os.geteuid() == 0 else []
    if prefix and not _can(prefix):
        pytest.skip("running as root, and user namespaces (unshare --user) are not allowed here")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        result = _run_cli(["--out", str(locked / "r")], prefix, tmp_path)
    finally:
        locked.chmod(0o755)
    assert result.returncode == 4, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "permission denied (EACCES)" in result.stderr
    assert list(locked.iterdir()) == []


@pytest.mark.parametrize(
    "mount,match",
    [
        ("mount --bind -o ro {dir} {dir}", "read-only file system (EROFS)"),
        ("mount -t tmpfs -o size=24k tmpfs {dir}", "no space left on the device (ENOSPC)"),
    ],
)
def test_real_read_only_and_full_disk(tmp_path, mount, match):
    if os.geteuid() != 0 or not _can(["unshare", "--mount"]):
        pytest.skip("needs root and mount namespaces (unshare --mount) to mount a read-only or tiny disk")
    disk = tmp_path / "disk"
    disk.mkdir()
    script = tmp_path / "run.sh"
    code = "from robustcnn.cli import main; main()"
    argv = " ".join(f"'{a}'" for a in ["audit", *TINY, "--out", str(disk / "r")])
    script.write_text(
        f"set -e\n{mount.format(dir=disk)}\n"
        f"{sys.executable} -c '{code}' {argv} || echo \"rc=$?\" >&2\n"
        f"ls -aR {disk} > {tmp_path / 'listing.txt'}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLCONFIGDIR": str(tmp_path / "mpl")}
    command = ["unshare", "--mount", "sh", str(script)]
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1] == "rc=4", result.stderr
    assert len(lines) == 2 and match in lines[0] and "Traceback" not in result.stderr
    listing = (tmp_path / "listing.txt").read_text()
    assert ".tmp" not in listing and "meta.json" not in listing


# --- resume ----------------------------------------------------------------------------------------


def sharded_run(tmp_path: Path, out: Path, *extra: str):
    plan = tmp_path / "plan.toml"
    plan.write_text('[data]\nspec = "digits"\nn = 20\n[run]\nchecks = ["clean"]\nshard_size = 5\n')
    return cli("--raw", "audit", str(plan), "--out", str(out), "--no-progress", *extra)


@pytest.mark.parametrize("damage", ["rows.json", "info.json", "samples.parquet", "delete:samples.parquet"])
def test_damaged_fragment_is_named_and_recomputed(tmp_path, damage):
    out = tmp_path / "r"
    assert sharded_run(tmp_path, out).exit_code == 0
    expected = (out / "results.csv").read_bytes()
    fragment = sorted(p for p in (out / ".fragments").iterdir() if (p / "samples.parquet").exists())[1]
    name = damage.removeprefix("delete:")
    if damage.startswith("delete:"):
        (fragment / name).unlink()
    else:
        (fragment / name).write_bytes(b'{"broken": ')
    named = f"fragment {staging_path(out) / '.fragments' / fragment.name}"
    line = assert_one_line(sharded_run(tmp_path, out, "--resume"), 0, named)
    assert "(clean, shard " in line and "is damaged" in line and "recomputing it" in line
    assert (out / "results.csv").read_bytes() == expected and not leftovers(tmp_path)
    assert robustcnn.load_report(out).meta["checks"]["clean"]["resumed_tasks"] >= 4


def test_tampered_fragment_values_are_not_reused(tmp_path):
    out = tmp_path / "r"
    assert sharded_run(tmp_path, out).exit_code == 0
    expected = (out / "results.csv").read_bytes()
    summary = next(p for p in (out / ".fragments").iterdir() if not (p / "samples.parquet").exists())
    rows = json.loads((summary / "rows.json").read_text())
    rows[0]["value"] = 1.0
    (summary / "rows.json").write_text(json.dumps(rows))
    assert_one_line(sharded_run(tmp_path, out, "--resume"), 0, "rows.json does not match its checksum")
    assert (out / "results.csv").read_bytes() == expected


# --- exit codes of other commands and of --debug ------------------------------------------------


def test_other_commands_writing_to_bad_places(tmp_path, report):
    result = cli("--raw", "report", "compare", str(report), "--out", "/proc/robustcnn.csv")
    assert_one_line(result, 4, "cannot access /proc/robustcnn.csv")
    policy = tmp_path / "p.toml"
    policy.write_text('[[gate]]\ncheck = "clean"\nmetric = "accuracy"\nmin = 0\n')
    markdown = str(tmp_path / "no" / "dir" / "g.md")
    result = cli("--raw", "gate", str(report), "--policy", str(policy), "--markdown", markdown)
    assert result.exit_code == 4 and "no such file or directory (ENOENT)" in result.stderr


@pytest.mark.parametrize(
    "args,match",
    [
        (["--out", "/proc/model.pt"], "is under /proc, a kernel file system"),
        (["--out", "{tmp}/no/such/folder/model.pt"], "does not exist; create it or choose another --out"),
        (["--out", "{tmp}/model.pt", "--seed", "-1"], "seed must be an integer from 0 to 4294967295, got -1"),
    ],
)
def test_train_refuses_before_training(tmp_path, args, match):
    args = [a.format(tmp=tmp_path) for a in args]
    assert_one_line(cli("--raw", "train", "--data", "digits", "--epochs", "1", *args), 4, match)
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_keeps_finished_work_and_resume_completes(tmp_path, monkeypatch):
    out = tmp_path / "r"
    from robustcnn import runner

    real = runner.LocalExecutor.run
    done = []

    def interrupt_on_third(self, task, compute):
        if len(done) == 2:
            raise KeyboardInterrupt
        done.append(task)
        return real(self, task, compute)

    monkeypatch.setattr(runner.LocalExecutor, "run", interrupt_on_third)
    assert_one_line(sharded_run(tmp_path, out), 130, "interrupted; completed work is kept, rerun with --resume")
    monkeypatch.undo()
    assert not out.exists() and not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
    assert len(list((staging_path(out) / ".fragments").iterdir())) == 2
    result = sharded_run(tmp_path, out, "--resume")
    assert result.exit_code == 0, result.stderr
    assert robustcnn.load_report(out).meta["checks"]["clean"]["resumed_tasks"] == 2 and not leftovers(tmp_path)


def test_resume_of_a_complete_report_reuses_everything(tmp_path):
    out = tmp_path / "r"
    assert sharded_run(tmp_path, out).exit_code == 0
    expected = (out / "results.csv").read_bytes()
    result = sharded_run(tmp_path, out, "--resume")
    assert result.exit_code == 0 and result.stderr == ""
    meta = robustcnn.load_report(out).meta["checks"]["clean"]
    assert meta["resumed_tasks"] == meta["tasks"] + 1 and (out / "results.csv").read_bytes() == expected


def test_out_as_a_symlink_to_an_empty_folder_stays_a_symlink(tmp_path):
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    result = cli("--out", str(tmp_path / "link"))
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "link").is_symlink() and is_complete(tmp_path / "target") and not leftovers(tmp_path)


@pytest.mark.parametrize(
    "error",
    [
        MemoryError(),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to allocate 1"
        ),
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    ],
)
def test_out_of_memory_is_the_machine_not_a_bug(tmp_path, monkeypatch, error):
    def exhausted(*args, **kwargs):
        raise error

    monkeypatch.setattr("robustcnn.checks.accuracy.clean.CleanCheck.measure", exhausted)
    assert_one_line(cli("--out", str(tmp_path / "r")), 4, "out of memory; lower --batch-size or --n")
    assert not (tmp_path / "r").exists() and not leftovers(tmp_path)


def test_debug_shows_the_traceback_and_keeps_the_exit_code(tmp_path, monkeypatch):
    result = cli("--out", str(tmp_path / "r"), "--seed", "-1", "--debug")
    assert result.exit_code == 4 and "Traceback" in result.stderr and "seed must be" in result.stderr
    monkeypatch.setattr("robustcnn.runner.combine", lambda frames: 1 / 0)
    assert_one_line(cli("--out", str(tmp_path / "r")), 3, "internal error: ZeroDivisionError")
    result = cli("--out", str(tmp_path / "r"), "--debug")
    assert result.exit_code == 3 and "Traceback" in result.stderr
    assert not (tmp_path / "r").exists() and not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
    kept = staging_path(tmp_path / "r")  # the finished shards wait there for --resume
    assert {p.name for p in kept.iterdir()} == {".fragments", ".robustcnn-staging"}


# --- properties: any plan or flag value ends in 0, 2, 4 or 5, never an internal error --------------

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

SCALARS = st.one_of(
    st.integers(-(10**25), 10**25),
    st.integers(-3, 40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=6),
    st.just(""),
)
VALUES_OR_LISTS = st.one_of(SCALARS, st.lists(SCALARS, max_size=4))


def toml_value(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    return "[" + ", ".join(toml_value(x) for x in v) + "]"


@hypothesis.settings(max_examples=40, deadline=None, suppress_health_check=list(hypothesis.HealthCheck))
@hypothesis.given(
    table=st.sampled_from(["model", "data", "run"]),
    key=st.sampled_from(
        [
            "seed",
            "n",
            "batch_size",
            "shard_size",
            "device",
            "checks",
            "input_size",
            "mean",
            "std",
            "num_classes",
            "in_channels",
            "trust_model",
            "name",
            "spec",
            "out",
        ]
    ),
    value=VALUES_OR_LISTS,
)
def test_any_plan_value_never_crashes(tmp_path_factory, table, key, value):
    root = tmp_path_factory.mktemp("plan")
    tables: dict[str, dict[str, str]] = {
        "model": {"spec": '"demo:mnist-cnn"'},
        "data": {"spec": '"digits"', "n": "10"},
        "run": {},
    }
    if not (table == "data" and key == "spec"):  # a random data spec could name any folder
        tables[table][key] = toml_value(value)
    plan = root / "plan.toml"
    plan.write_text(
        "".join(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in body.items()) for name, body in tables.items())
    )
    result = cli("--raw", "audit", str(plan), "--out", str(root / "r"), "--checks", "clean", "--no-progress")
    assert result.exit_code in (0, 2, 4, 5), (plan.read_text(), result.stderr)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert result.exit_code != 0 or is_complete(root / "r")
    assert not [p for p in root.rglob("*") if ".tmp" in p.name]


@hypothesis.settings(max_examples=40, deadline=None, suppress_health_check=list(hypothesis.HealthCheck))
@hypothesis.given(
    option=st.sampled_from(
        [
            "--seed",
            "--n",
            "--batch-size",
            "--input-size",
            "--mean",
            "--std",
            "--num-classes",
            "--channels",
            "--device",
            "--checks",
            "--name",
        ]
    ),
    value=st.one_of(
        st.integers(-(10**25), 10**25).map(str),
        st.integers(-2, 40).map(str),
        st.floats().map(str),
        st.text(max_size=8),
        st.tuples(st.integers(-2, 40), st.integers(-2, 40)).map(lambda hw: f"{hw[0]}x{hw[1]}"),
    ),
)
def test_any_flag_value_never_crashes(tmp_path_factory, option, value):
    hypothesis.assume("\x00" not in value)
    root = tmp_path_factory.mktemp("flag")
    result = CliRunner().invoke(
        main,
        [
            "audit",
            "--data",
            "digits",
            "--n",
            "10",
            "--checks",
            "clean",
            "--no-progress",
            "--out",
            str(root / "r"),
            option,
            value,
        ],
    )
    assert result.exit_code in (0, 2, 4, 5), (option, value, result.stderr)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert not [p for p in root.rglob("*") if ".tmp" in p.name]

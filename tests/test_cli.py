"""CLI: bad input gives one line and the right exit code, never a traceback or a complete-looking report."""

import os
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from helpers import save_torchscript, small_net, write_npz

from robustcnn.cli import main


def run(*args):
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def assert_clean_error(code, output, expected_code, match):
    assert code == expected_code, output
    assert "Traceback" not in output
    assert match in output


def test_missing_model_file(tmp_path):
    code, out = run("audit", "--model", str(tmp_path / "nope.pt"), "--checks", "clean", "--out", str(tmp_path / "r"))
    assert_clean_error(code, out, 4, "model file not found")
    assert not (tmp_path / "r" / "meta.json").exists()


def test_state_dict_mismatch(tmp_path):
    torch.save(small_net().state_dict(), tmp_path / "w.pt")
    code, out = run(
        "audit",
        "--model",
        str(tmp_path / "w.pt"),
        "--arch",
        "torchvision:resnet18",
        "--checks",
        "clean",
        "--out",
        str(tmp_path / "r"),
    )
    assert_clean_error(code, out, 4, "does not match architecture")


def test_labels_outside_model_classes(tmp_path):
    path = save_torchscript(small_net(num_classes=3), tmp_path / "m.pt")
    x = torch.rand(6, 1, 28, 28).numpy()
    write_npz(tmp_path / "d.npz", x, __import__("numpy").array([0, 1, 2, 3, 4, 5]))
    code, out = run(
        "audit",
        "--model",
        str(path),
        "--trust-model",
        "--num-classes",
        "3",
        "--data",
        str(tmp_path / "d.npz"),
        "--checks",
        "clean",
        "--out",
        str(tmp_path / "r"),
    )
    assert_clean_error(code, out, 4, "labels reach 5 but the model has 3 classes")


def test_channel_mismatch(tmp_path):
    path = save_torchscript(small_net(in_channels=3), tmp_path / "m.pt")
    code, out = run("audit", "--model", str(path), "--trust-model", "--checks", "clean", "--out", str(tmp_path / "r"))
    assert_clean_error(code, out, 4, "failed on input of shape (2, 1, 28, 28)")


def test_unknown_check_and_plan_key(tmp_path):
    code, out = run("audit", "--checks", "clean,nonsense", "--out", str(tmp_path / "r"))
    assert_clean_error(code, out, 4, "unknown check 'nonsense'")
    plan = tmp_path / "p.toml"
    plan.write_text('[run]\nchecks = ["clean"]\nsede = 3\n')
    code, out = run("audit", str(plan))
    assert_clean_error(code, out, 4, "unknown key 'sede' in [run]")
    plan.write_text("[run\n")
    code, out = run("audit", str(plan))
    assert_clean_error(code, out, 4, "not valid TOML")
    plan.write_text('[run]\nchecks = ["clean"]\n[checks.clean]\nbogus = 1\n')
    code, out = run("audit", str(plan))
    assert_clean_error(code, out, 4, "check 'clean' has no option 'bogus'")


@pytest.mark.parametrize(
    "args,match",
    [
        (["--n", "0"], "--n"),
        (["--input-size", "big"], "--input-size takes HxW"),
        (["--set", "novalue"], "--set takes CHECK.KEY=VALUE"),
        (["--mean", "a,b"], "--mean takes comma-separated numbers"),
    ],
)
def test_usage_errors_exit_2(tmp_path, args, match):
    code, out = run("audit", "--checks", "clean", "--out", str(tmp_path / "r"), *args)
    assert_clean_error(code, out, 2, match)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu_is_a_usage_error(tmp_path):
    code, out = run("audit", "--device", "cuda", "--checks", "clean", "--out", str(tmp_path / "r"))
    assert_clean_error(code, out, 2, "no CUDA GPU")


def test_narrowing_the_demo_plan_refuses_only_options_given_on_the_command_line(tmp_path):
    code, out = run("audit", "--checks", "clean", "--n", "20", "--out", str(tmp_path / "a"), "--no-progress")
    assert code == 0, out
    assert "wrote" in out and "not selected" not in out
    code, out = run(
        "audit", "--checks", "clean", "--n", "20", "--target", "3", "--out", str(tmp_path / "b"), "--no-progress"
    )
    assert_clean_error(code, out, 4, "--target sets an option of check 'patch', which is not selected")


def test_list_and_report_show(tmp_path):
    code, out = run("list")
    assert code == 0 and "clean" in out and "mnist5k" in out and "demo:mnist-cnn" in out
    code, out = run("audit", "--checks", "clean", "--n", "20", "--out", str(tmp_path / "r"), "--no-progress")
    assert code == 0, out
    code, out = run("report", "show", str(tmp_path / "r"))
    assert code == 0 and "clean" in out
    code, out = run("report", "show", str(tmp_path / "missing"))
    assert_clean_error(code, out, 4, "not a complete robustcnn report")


def test_every_option_has_help():
    for command in ("audit", "list", "train"):
        code, out = run(command, "--help")
        assert code == 0
    code, out = run("audit", "--help")
    for option in (
        "--model",
        "--arch",
        "--data",
        "--checks",
        "--n",
        "--seed",
        "--device",
        "--batch-size",
        "--out",
        "--resume",
        "--no-progress",
        "--debug",
    ):
        assert option in out


def test_train_command_and_audit_the_result(tmp_path, mnist):
    from helpers import write_image_folder

    from robustcnn.data import stratified_sample

    classes = [str(i) for i in range(10)]
    tr = stratified_sample(mnist.train.y, 200, 0)
    te = stratified_sample(mnist.test.y, 50, 0)
    write_image_folder(tmp_path / "ds" / "train", mnist.train.x[tr], mnist.train.y[tr], classes)
    write_image_folder(tmp_path / "ds" / "test", mnist.test.x[te], mnist.test.y[te], classes)
    code, out = run("train", "--data", str(tmp_path / "ds"), "--epochs", "1", "--out", str(tmp_path / "m.pt"))
    assert code == 0, out
    code, out = run(
        "audit",
        "--model",
        str(tmp_path / "m.pt"),
        "--arch",
        "demo:mnist-cnn",
        "--data",
        str(tmp_path / "ds"),
        "--checks",
        "clean",
        "--out",
        str(tmp_path / "r"),
        "--no-progress",
    )
    assert code == 0, out


def test_plan_with_several_models_writes_one_report_each(tmp_path):
    plan = tmp_path / "two.toml"
    plan.write_text(
        '[[model]]\nspec = "demo:mnist-cnn"\nname = "first"\n'
        '[[model]]\nspec = "demo:mnist-cnn"\nname = "second"\n'
        f'[data]\nspec = "mnist5k"\nn = 20\n[run]\nchecks = ["clean"]\nout = "{tmp_path / "out"}"\n'
    )
    code, out = run("audit", str(plan), "--no-progress")
    assert code == 0, out
    assert (tmp_path / "out" / "first" / "meta.json").exists()
    assert (tmp_path / "out" / "second" / "meta.json").exists()


def test_options_for_a_check_that_does_not_run_are_refused(tmp_path):
    code, out = run(
        "audit", "--data", "digits", "--checks", "clean", "--set", "adversarial.bogus=1", "--out", str(tmp_path / "r")
    )
    assert code == 4 and "--set adversarial.bogus=1 sets an option of check 'adversarial', which is not selected" in out
    assert not (tmp_path / "r").exists()
    code, out = run("audit", "--data", "digits", "--checks", "clean", "--target", "3", "--out", str(tmp_path / "r"))
    assert code == 4 and "--target sets an option of check 'patch', which is not selected" in out


def test_the_audit_says_which_checks_run(tmp_path):
    code, out = run("audit", "--data", "digits", "--n", "10", "--out", str(tmp_path / "r"), "--no-progress")
    assert (
        code == 0
        and "running checks: clean (the default; --checks all|quick|standard|thorough|NAME,... selects more)" in out
    )


def test_a_reader_that_goes_away_is_no_internal_error():
    """``robustcnn list --options all | head -1``: the closed pipe ends the run quietly, as a pipe does.
    The reader is gone before the first write (the output, about 23 kB, would otherwise fit in the
    pipe's buffer and race the close)."""
    cmd = [sys.executable, "-c", "from robustcnn.cli import main; main()", "list", "--options", "all"]
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.Popen(cmd, stdout=write_end, stderr=subprocess.PIPE)
    finally:
        os.close(write_end)
    stderr = proc.stderr.read().decode()
    assert proc.wait() == 141 and "error" not in stderr, stderr

"""Every example in README.md and docs/**/*.md runs: a doc example that fails fails the tests.

Fenced blocks are taken from the markdown files and run in a temporary workspace that holds
tiny stand-ins for the documents' placeholders (``SUBSTITUTIONS``) and a small audit of the demo
CNN under ``reports/mnist-cnn``:

* ``sh``/``console``/``bash``/untagged blocks: each line (``\\`` continuations joined) that starts with
  ``robustcnn`` runs through the CLI in-process; other lines (``make``, ``xdg-open``, ...) are not run.
  Optional arguments written as ``[--flag value]`` are run with the flag. Audits run with small
  ``--n`` and attack budgets (``CHEAP_AUDIT``).
* ``python`` blocks run in one namespace per markdown file (so a later block may use an earlier
  one's names), seeded with ``report``, ``model``, ``x``, ``y``, ``images``, ``torch`` and ``my_render``.
* ``toml`` blocks: a whole plan (with ``[model]``) is audited; ``[checks.NAME]`` fragments are
  validated as plan options; ``[[gate]]`` policies are evaluated on ``reports/mnist-cnn``.

A doc author skips a block only with a reason, in an HTML comment on the line right before the
fence: ``<!-- doc-test: skip because ... -->``.
"""

from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomllib
import torch
from click.testing import CliRunner
from helpers import save_exported, small_net, write_image_folder

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELL = {"sh", "console", "bash", "shell", ""}
RUN = {*SHELL, "python", "toml"}
SKIP = re.compile(r"<!--\s*doc-test:\s*skip\b\s*(?P<reason>.*?)\s*-->")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")

# Placeholder text in the docs -> what the test runs instead (the workspace builds the files).
SUBSTITUTIONS = {
    "path/to/imagefolder": "imagefolder",
    "--n 500": "--n 8",
    "n=500": "n=8",
    "n = 500": "n = 8",
    "n = 200": "n = 8",
}
CHEAP_AUDIT = [
    "--n",
    "8",
    "--set",
    "adversarial.fmn_steps=3",
    "--set",
    "adversarial.ddn_steps=3",
    "--set",
    "adversarial.apgd_steps=2",
    "--set",
    "adversarial.apgd_targets=1",
    "--set",
    "adversarial.apgd_target_steps=2",
    "--set",
    "adversarial.apgd_dlr_steps=2",
    "--set",
    "adversarial.square_queries=10",
    "--set",
    "adversarial.unbounded_images=0",
    "--set",
    "corruptions.severities=[3]",
    "--set",
    "confidence.noise_n=16",
    "--set",
    "confidence.fooling_n=2",
    "--set",
    "confidence.fooling_steps=3",
]
POLICY = """
[[gate]]
check = "clean"
metric = "accuracy"
min = 0.9

[[gate]]
check = "adversarial"
metric = "robust_accuracy"
norm = "linf"
eps = 0.1
min = 0.3
"""
GATE_EXITS = {0, 1}  # a gate may fail on the tiny sample: exit 1 is the documented verdict, not an error


@dataclass
class Block:
    path: Path
    line: int
    lang: str
    text: str
    skip: str | None

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a markdown file with their language and skip marker."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, start = m.group("fence"), i
        i += 1
        body = []
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][len(m.group("indent")) :])
            i += 1
        i += 1
        marker = SKIP.search(lines[start - 1]) if start else None
        found.append(
            Block(path, start + 1, m.group("lang").lower(), "\n".join(body), marker and marker.group("reason"))
        )
    return found


ALL = [b for p in DOCS for b in blocks(p) if b.lang in RUN]


def substitute(text: str) -> str:
    for old, new in SUBSTITUTIONS.items():
        text = text.replace(old, new)
    return text


def cheap_options(args: list[str]) -> list[str]:
    """CHEAP_AUDIT's --n, and its budgets for the checks the command runs: options for a check that
    does not run are refused. Without --checks a plan runs its own checks (the cheap budgets cover
    the demo and CI plans); a bare --model/--data audit runs only clean."""
    plan_given = len(args) > 1 and args[1].endswith(".toml")
    if "--checks" in args:
        selected: set[str] | None = set(args[args.index("--checks") + 1].split(","))
    else:
        selected = None if plan_given or not {"--model", "--data"} & set(args) else {"clean"}
    cheap = ["--n", "8"]
    for flag, value in zip(CHEAP_AUDIT[2::2], CHEAP_AUDIT[3::2], strict=False):
        if selected is None or value.split(".")[0] in selected:
            cheap += [flag, value]
    return cheap


def commands(text: str) -> list[list[str]]:
    """The ``robustcnn`` command lines of a shell block, as argument lists (without ``robustcnn``)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        line = re.sub(r"\[(--[^\]]*)\]", r"\1", line.strip())
        if not line.startswith("robustcnn "):
            continue
        args = shlex.split(line, comments=True)[1:]
        if args and args[0] == "audit":
            args += cheap_options(args)
        out.append(args)
    return out


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A directory with the documents' placeholders made real, and a small demo report."""
    from robustcnn.cli import main

    root = tmp_path_factory.mktemp("docs")
    shutil.copytree(ROOT / "audits", root / "audits")
    torch.manual_seed(0)
    images, labels = torch.rand(24, 3, 28, 28), torch.arange(24) % 3
    write_image_folder(root / "imagefolder" / "train", images[:12], labels[:12], ["cat", "cow", "dog"])
    write_image_folder(root / "imagefolder" / "test", images[12:], labels[12:], ["cat", "cow", "dog"])
    for name in ("my_model.pt2", "model.pt2"):
        save_exported(small_net(3, 3), root / name, shape=(2, 3, 28, 28))
    from safetensors.torch import save_file

    from robustcnn.models import build_architecture

    for name in ("a.pt", "b.pt", "c.pt"):  # the many-model examples: demo CNNs as state_dicts
        torch.save(build_architecture("demo:mnist-cnn", num_classes=10, in_channels=1).state_dict(), root / name)
    resnet = build_architecture("torchvision:resnet18", num_classes=3, in_channels=3).state_dict()
    for name in ("my_model.safetensors", "weights.safetensors"):
        save_file({k: v.contiguous() for k, v in resnet.items()}, str(root / name))
    (root / "policy.toml").write_text(POLICY, encoding="utf-8")
    (root / "reports").mkdir()
    (root / "reports" / "README.md").write_text("Reports land here.\n")
    runner = CliRunner()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        result = runner.invoke(main, ["audit", "audits/ci.toml", "--out", "reports/mnist-cnn", *CHEAP_AUDIT])
        assert result.exit_code in GATE_EXITS, result.output
        for name in ("a", "b", "main", "previous", "colored-mnist-cnn"):
            shutil.copytree(root / "reports" / "mnist-cnn", root / "reports" / name)
    shutil.copytree(root / "reports", root / "pristine-reports")
    return root


def _restore_reports(workspace: Path) -> None:
    """Put the demo reports back: an example may overwrite one (an audit of the demo plan writes reports/mnist-cnn)."""
    for pristine in (workspace / "pristine-reports").iterdir():
        target = workspace / "reports" / pristine.name
        if target.is_dir():
            shutil.rmtree(target)
        if pristine.is_dir():
            shutil.copytree(pristine, target)


NAMESPACES: dict[Path, dict] = {}
RAN: dict[Path, set[str]] = {}  # the python blocks each file's namespace has run


def _earlier_python_blocks(block: Block) -> list[Block]:
    """The python blocks before ``block`` in its file that are not skipped: a block may use what they define."""
    return [b for b in ALL if b.path == block.path and b.lang == "python" and b.line < block.line and b.skip is None]


def _seed(workspace: Path) -> dict:
    from robustcnn import Report
    from robustcnn.data import DatasetRef
    from robustcnn.models import ModelRef

    data = DatasetRef("imagefolder").load()
    model = ModelRef("my_model.pt2", trust=True).load(3, 3, (28, 28))
    x, y = data.test.x[:4], data.test.y[:4]

    def my_render(ids, values):
        return torch.rand(len(ids), 3, 28, 28)

    return {
        "report": Report.load("reports/mnist-cnn"),
        "model": model,
        "x": x,
        "y": y,
        "images": x,
        "torch": torch,
        "my_render": my_render,
    }


@pytest.mark.parametrize("block", ALL, ids=[b.id for b in ALL])
def test_doc_example_runs(block: Block, workspace: Path, monkeypatch):
    if block.skip is not None:
        assert block.skip, f"{block.id}: a doc-test skip marker needs a reason"
        pytest.skip(block.skip)
    monkeypatch.chdir(workspace)
    _restore_reports(workspace)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    text = substitute(block.text)
    if block.lang in SHELL:
        _run_shell(block, text)
    elif block.lang == "python":
        namespace = NAMESPACES.setdefault(block.path, _seed(workspace))
        ran = RAN.setdefault(block.path, set())
        for earlier in _earlier_python_blocks(block):  # when another worker ran them (pytest -n)
            if earlier.id not in ran:
                exec(compile(substitute(earlier.text), earlier.id, "exec"), namespace)
                ran.add(earlier.id)
        exec(compile(text, block.id, "exec"), namespace)
        ran.add(block.id)
    else:
        _run_toml(block, text, workspace)


def _run_shell(block: Block, text: str) -> None:
    from robustcnn.cli import main

    runs = commands(text)
    if not runs:
        pytest.skip("no robustcnn command in this block")
    for args in runs:
        result = CliRunner().invoke(main, args)
        allowed = GATE_EXITS if args[0] == "gate" or "--junit" in args or "--policy" in args else {0}
        assert result.exit_code in allowed, (
            f"{block.id}: robustcnn {shlex.join(args)} -> exit {result.exit_code}\n{result.output}"
        )


def _run_toml(block: Block, text: str, workspace: Path) -> None:
    from robustcnn.checks import load_registry
    from robustcnn.cli import main
    from robustcnn.plan import plan_from_dict
    from robustcnn.reports.gates import evaluate, parse_gates
    from robustcnn.results.report import Report

    raw = tomllib.loads(text)
    if "model" in raw:
        path = workspace / f"plan-{block.line}.toml"
        path.write_text(text, encoding="utf-8")
        checks = ",".join(raw.get("run", {}).get("checks", ["clean"]))
        result = CliRunner().invoke(main, ["audit", str(path), *cheap_options(["audit", "--checks", checks])])
        assert result.exit_code in GATE_EXITS, (
            f"{block.id}: the plan's audit -> exit {result.exit_code}\n{result.output}"
        )
    elif set(raw) == {"gate"}:
        gates = parse_gates(raw["gate"], block.id)
        relative = any(g.max_drop is not None or g.max_rise is not None for g in gates)
        evaluate(gates, Report.load("reports/mnist-cnn"), baseline=Report.load("reports/main") if relative else None)
    else:
        plan = plan_from_dict(raw, block.id)
        registry = load_registry()
        for name, options in plan.options.items():
            registry[name].from_options(options)


def test_the_extractor_sees_every_kind_of_block():
    kinds = {b.lang for b in ALL}
    assert {"sh", "python", "toml"} <= kinds
    assert any(commands(substitute(b.text)) for b in ALL if b.lang in SHELL)


def test_skip_marker_and_optional_flags(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text(
        "<!-- doc-test: skip needs a GPU -->\n```sh\nrobustcnn list\n```\n```sh\nrobustcnn gate r [--junit g.xml] \\\n"
        "  --policy p.toml   # comment\nmake demo\n```\n"
    )
    first, second = blocks(doc)
    assert first.skip == "needs a GPU" and second.skip is None
    assert commands(second.text) == [["gate", "r", "--junit", "g.xml", "--policy", "p.toml"]]

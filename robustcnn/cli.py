"""Command line: ``robustcnn audit | list | train | report show`` (and gates, see reports.gates).

Errors print one line and exit with their code (1 gate failed, 2 usage, 3 internal bug only,
4 invalid input, config or environment, 5 nothing evaluated); ``--debug`` adds the traceback
and keeps the code. An audit stopped by ``--max-minutes`` writes a partial report and exits 6.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from .errors import PARTIAL_EXIT, InvalidInputError, RobustCNNError, UsageError, environment_error

log = logging.getLogger("robustcnn")


def _configure_logging(debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO, format="robustcnn: %(message)s", stream=sys.stderr, force=True
    )
    for noisy in ("matplotlib", "PIL", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn errors into one line on stderr and the right exit code; ``--debug`` adds the traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = bool(kwargs.get("debug"))
        _configure_logging(debug)
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            click.echo("robustcnn: interrupted; completed work is kept, rerun with --resume", err=True)
            sys.exit(130)
        except (click.exceptions.Exit, click.ClickException):
            raise
        except BrokenPipeError:
            # the reader went away (``robustcnn list | head``): not an error of ours; point stdout at
            # /dev/null so that Python's flush at exit does not raise again, and end as a pipe does
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)
        except Exception as exc:
            code, message = _classify(exc)
            if debug:
                traceback.print_exc()
            click.echo(message, err=True)
            sys.exit(code)

    return wrapper


def _classify(exc: Exception) -> tuple[int, str]:
    """The exit code and one-line message of an error: 3 (internal) only for what is no user or
    environment fault."""
    if isinstance(exc, OSError):
        mapped = environment_error(exc)
        exc = mapped if mapped is not None else exc
    elif isinstance(exc, MemoryError) or _is_torch_out_of_memory(exc):
        exc = InvalidInputError("out of memory; lower --batch-size or --n, or run on a machine with more memory")
    if isinstance(exc, RobustCNNError):
        return exc.exit_code, f"robustcnn: error: {_one_line(str(exc))}"
    detail = f"{type(exc).__name__}: {_one_line(str(exc))}"
    return 3, f"robustcnn: internal error: {detail} (a bug: rerun with --debug and report it)"


def _is_torch_out_of_memory(exc: Exception) -> bool:
    """torch reports a failed allocation as a RuntimeError (``torch.OutOfMemoryError`` on GPUs)."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text.lower() or "can't allocate memory" in text)


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


debug_option = click.option("--debug", is_flag=True, help="Show full tracebacks and debug logging.")


class _OneLineGroup(click.Group):
    """Usage errors as one line (``robustcnn: error: ...``, exit 2) instead of click's usage block."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except getattr(click.exceptions, "NoArgsIsHelpError", ()) as exc:  # bare `robustcnn`: the help
            exc.show()
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"robustcnn: error: {_one_line(exc.format_message())} (see --help)", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("robustcnn: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=_OneLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="robustcnn")
def main() -> None:
    """Adversarial-robustness and bias audits for trained CNNs."""


def _floats(text: str | None, option: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError as exc:
        raise UsageError(f"{option} takes comma-separated numbers, e.g. 0.485,0.456,0.406") from exc


@main.command()
@click.argument("plan_file", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--model",
    "model_specs",
    multiple=True,
    help="Model file (safetensors or torch.save state_dict with --arch; .pt2, TorchScript or pickle with --trust-model) "
    "or demo:NAME. Default: demo:mnist-cnn. Repeat to audit several models with the same other flags "
    "(one report each, plus index.html).",
)
@click.option("--arch", help="Architecture for a state_dict: torchvision:NAME, demo:NAME or package.module:factory.")
@click.option(
    "--num-classes", type=click.IntRange(min=2), help="Number of classes the model outputs (default: the dataset's)."
)
@click.option("--channels", type=click.IntRange(min=1), help="Input channels the model takes (default: the dataset's).")
@click.option("--input-size", help="Input size HxW the model takes, e.g. 224x224 (default: the dataset's).")
@click.option("--mean", help="Per-channel normalisation mean applied inside the wrapper, e.g. 0.485,0.456,0.406.")
@click.option("--std", help="Per-channel normalisation std applied inside the wrapper, e.g. 0.229,0.224,0.225.")
@click.option(
    "--trust-model",
    is_flag=True,
    help="Allow files that can run code when loaded: .pt2, TorchScript, pickled modules, pickles torch's weights-only loader refuses.",
)
@click.option("--name", help="Model name used in tables and the default output folder.")
@click.option(
    "--data",
    "data_spec",
    help="Dataset: mnist5k (default), digits, a built-in bias set, an ImageFolder directory or an .npz file.",
)
@click.option(
    "--checks",
    help="Comma-separated checks, families, `all`, or a profile: quick, standard, thorough "
    "(budgets in docs/profiles.md; see `robustcnn list`). Default: the plan's checks, or clean alone without a plan.",
)
@click.option(
    "--n", type=click.IntRange(min=1), help="Evaluate a seeded, class-stratified sample of this many test images."
)
@click.option(
    "--resize",
    type=click.IntRange(min=1),
    help="Resize each image's shorter side to this many pixels (like torchvision's Resize(S)).",
)
@click.option("--center-crop", help="Then cut the centre HxW or S (like torchvision's CenterCrop), e.g. 224.")
@click.option(
    "--train-n",
    type=click.IntRange(min=1),
    help="Training images a check may decode, a seeded class-stratified sample (default 5000).",
)
@click.option("--seed", type=int, help="Random seed (default 0); the same seed gives the same results.csv.")
@click.option("--device", help="cpu (default), cuda or cuda:N.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    help="Images per model call (default: as many, up to 256, as fit 512 MiB of activations on CPU or half the free GPU memory; see meta.json 'batch').",
)
@click.option("--out", type=click.Path(file_okay=False), help="Output directory (default reports/<model name>/).")
@click.option(
    "--force",
    is_flag=True,
    help="Write into a non-empty --out that is not a robustcnn report (its files are left untouched).",
)
@click.option("--set", "set_options", multiple=True, help="Check option CHECK.KEY=VALUE (TOML value), repeatable.")
@click.option("--attacks", help="Named attacks for the adversarial check, comma-separated (e.g. fgsm,pgd).")
@click.option("--target", help="Target class (name or index) for the patch check.")
@click.option("--ood", type=click.Path(), help="Extra out-of-distribution dataset for the confidence check.")
@click.option(
    "--baseline", type=click.Path(file_okay=False), help="A baseline report directory (relative mCE, gate drops)."
)
@click.option("--resume", is_flag=True, help="Reuse the completed work of an interrupted run of the same audit.")
@click.option(
    "--max-minutes",
    type=click.FloatRange(min=0),
    help="Stop at the first task boundary after this many minutes and write a partial report (exit 6); "
    "--resume finishes it.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the plan and its estimated cost (model loaded, sample decoded), write nothing.",
)
@click.option("--no-progress", is_flag=True, help="Do not show a progress bar.")
@click.option(
    "--executor",
    default="local",
    show_default=True,
    help="Where tasks run: local (this process), processes (a pool, see --workers) or ray.",
)
@click.option(
    "--workers", type=click.IntRange(min=1), help="Worker processes, or Ray actors (and a local Ray runtime's CPUs)."
)
@click.option(
    "--ray-address", help="Join this Ray cluster (HOST:PORT from `ray start --head`) instead of a local runtime."
)
@click.option(
    "--shard",
    "shard_spec",
    help="Run only slice I of N of the task list (e.g. 2/4) and write fragments for `robustcnn merge`.",
)
@click.option(
    "--policy",
    type=click.Path(dir_okay=False),
    help="Gate policy ([[gate]] tables) to check after the audit, besides the plan's own gates.",
)
@click.option("--junit", type=click.Path(dir_okay=False), help="Write the gate verdicts as JUnit XML to this file.")
@click.option("--warn-only", is_flag=True, help="Report failing gates as warnings and exit 0.")
@debug_option
@handle_errors
def audit(
    plan_file: str | None,
    model_specs: tuple[str, ...],
    arch: str | None,
    num_classes: int | None,
    channels: int | None,
    input_size: str | None,
    mean: str | None,
    std: str | None,
    trust_model: bool,
    name: str | None,
    data_spec: str | None,
    checks: str | None,
    n: int | None,
    resize: int | None,
    center_crop: str | None,
    train_n: int | None,
    seed: int | None,
    device: str | None,
    batch_size: int | None,
    out: str | None,
    force: bool,
    set_options: tuple[str, ...],
    attacks: str | None,
    target: str | None,
    ood: str | None,
    baseline: str | None,
    resume: bool,
    max_minutes: float | None,
    dry_run: bool,
    no_progress: bool,
    executor: str,
    workers: int | None,
    ray_address: str | None,
    shard_spec: str | None,
    policy: str | None,
    junit: str | None,
    warn_only: bool,
    debug: bool,
) -> None:
    """Audit a model. With no arguments: the demo model on MNIST with audits/demo.toml.

    Gates in the plan's [[gate]] tables and in --policy are checked on every report; the exit
    code is then 1 if a gate failed."""
    from .models import ModelRef
    from .plan import load_plan, merge_options, parse_set, validate_plan
    from .profiles import resolve_checks
    from .reports.report import report_files
    from .runner import run_plan

    plan_path = plan_file or (_demo_plan() if not model_specs and data_spec is None else None)
    plan = load_plan(plan_path) if plan_path else _plain_plan()
    if len(model_specs) > 1 and name is not None:
        raise UsageError("--name names one model; with several --model the names come from the files")
    given = (arch, num_classes, channels, input_size, mean, std, name)
    if trust_model or model_specs or any(v is not None for v in given):
        base = plan.models[0] if not model_specs and len(plan.models) == 1 else ModelRef()
        plan.models = [
            ModelRef(
                spec=model_spec or base.spec,
                arch=arch or base.arch,
                num_classes=num_classes or base.num_classes,
                in_channels=channels or base.in_channels,
                input_size=_size(input_size) if input_size is not None else base.input_size,
                mean=_floats(mean, "--mean") if mean is not None else base.mean,
                std=_floats(std, "--std") if std is not None else base.std,
                trust=trust_model or base.trust,
                name=name or base.name,
            )
            for model_spec in (model_specs or (None,))
        ]
    selection = resolve_checks(checks) if checks is not None else None
    selected = selection.checks if selection else None
    # --checks narrows the plan: the plan's own options for the checks it leaves out are no mistake to warn about
    kept = {k: v for k, v in plan.options.items() if selected is None or k in selected or k not in plan.checks}
    flags: dict[str, dict[str, Any]] = {}
    if attacks:
        flags["adversarial"] = {"attacks": [a.strip() for a in attacks.split(",") if a.strip()]}
    if target is not None:
        flags["patch"] = {"target": target}
    if ood is not None:
        flags["confidence"] = {"ood": ood}
    options = merge_options(selection.options if selection else None, kept, parse_set(set_options), flags)
    plan = plan.with_overrides(
        data=data_spec,
        n=n or (selection.n if selection else None),
        resize=resize,
        center_crop=_size(center_crop, "--center-crop"),
        train_n=train_n,
        seed=seed,
        device=device,
        batch_size=batch_size,
        out=out,
        baseline=baseline,
        checks=selected,
        options=options,
        optional=selection.optional if selection else None,
        max_minutes=max_minutes,
    )
    validate_plan(plan)
    _reject_unselected(plan.checks, set_options, attacks, target, ood)
    _announce_checks(plan, selection, plan_path)
    gates = _plan_gates(plan, policy)
    if junit and not gates:
        raise UsageError("--junit needs gates: give --policy FILE or [[gate]] tables in the plan")
    if dry_run:
        from .runner import estimate_model

        for ref in plan.models:
            click.echo(f"plan for {ref.display_name()}:\n{estimate_model(plan, ref)}")
        return
    progress = not no_progress and sys.stderr.isatty()
    if shard_spec is not None:
        from .sharding import parse_shard, run_shard

        index, count = parse_shard(shard_spec)
        with _engine(executor, workers, ray_address, plan) as engine:
            folder, done, deferred = run_shard(plan, index, count, Path(out or f"shard-{index}-of-{count}"), engine)
        click.echo(f"wrote {folder}/ (shard {index}/{count}: {done} tasks; {deferred} left to `robustcnn merge`)")
        return
    if len(plan.models) > 1:
        from .reports.index_page import check_index_target

        check_index_target(Path(plan.out or "reports"))
    verdicts = {}
    lines = not no_progress and not progress
    with _engine(executor, workers, ray_address, plan) as engine:
        reports = run_plan(
            plan, resume=resume, progress=progress, force=force, lines=lines, rendered=report_files(), engine=engine
        )
    partial = len(reports) < len(plan.models)
    for report in reports:
        if report.meta.get("status") == "partial":
            partial = True
            not_run = ", ".join(report.meta["stopped"]["checks_not_run"])
            click.echo(
                f"wrote {report.path}/ ({len(report.table)} rows; PARTIAL, not run: {not_run}; --resume finishes it)"
            )
        else:
            click.echo(f"wrote {report.path}/ ({len(report.table)} rows)")
        _print_headlines(report)
        if gates and report.meta.get("status") == "partial":
            click.echo(f"{report.model}: gates not checked on a partial report")
        elif gates:
            verdicts[report.model] = _gate_report(report, gates, plan.baseline, warn_only, rewrite=True)
        _append_step_summary(report, verdicts.get(report.model))
    if len(reports) > 1:
        from .reports.index_page import write_index

        index, table = write_index(Path(plan.out or "reports"), reports, verdicts if gates else None)
        click.echo(f"wrote {index} and {table} (comparison of {len(reports)} models)")
    code = PARTIAL_EXIT if partial else 0
    if verdicts:
        from .reports.gates import exit_code, write_junit

        if junit:
            write_junit(verdicts, junit)
            click.echo(f"wrote {junit}")
        gated = exit_code([r for rs in verdicts.values() for r in rs])
        code = gated if gated else code
    sys.exit(code)


@contextlib.contextmanager
def _engine(name: str, workers: int | None, ray_address: str | None, plan) -> Iterator[Any]:
    """The executor's engine, closed at the end; after an error or Ctrl-C its workers are stopped."""
    from .executors import make_engine

    if ray_address is not None and name != "ray":
        raise UsageError("--ray-address needs --executor ray")
    gpus = plan.num_gpus if plan.num_gpus is not None else int(plan.device.startswith("cuda"))
    engine = make_engine(name, workers, ray_address, plan.num_cpus, gpus)
    try:
        yield engine
    except BaseException:
        engine.close(cancel=True)
        raise
    engine.close()


def _reject_unselected(
    checks: list[str], set_options: tuple[str, ...], attacks: str | None, target: str | None, ood: str | None
) -> None:
    """Options given on the command line for a check that will not run are a mistake, not a no-op."""
    given = {item.partition("=")[0].partition(".")[0]: f"--set {item}" for item in set_options}
    for flag, check, value in (
        ("--attacks", "adversarial", attacks),
        ("--target", "patch", target),
        ("--ood", "confidence", ood),
    ):
        if value is not None:
            given.setdefault(check, flag)
    for check, flag in given.items():
        if check not in checks:
            raise InvalidInputError(
                f"{flag} sets an option of check '{check}', which is not selected; add it to --checks"
            )


def _announce_checks(plan, selection, plan_path: str | None) -> None:
    """Say which checks run and where that choice came from, so no default is silent (checks
    named one by one on the command line need no announcement)."""
    if selection is not None and not selection.optional and not selection.profile:
        return
    if selection is not None:
        origin = f"profile {selection.profile}, n={plan.n}" if selection.profile else "--checks"
    elif plan_path:
        origin = f"from {plan_path}; --checks all|quick|standard|thorough|NAME,... selects others"
    else:
        origin = "the default; --checks all|quick|standard|thorough|NAME,... selects more"
    click.echo(f"running checks: {', '.join(plan.checks)} ({origin})")


def _plan_gates(plan, policy: str | None) -> list:
    """The plan's [[gate]] tables and the policy file's, validated before anything runs."""
    from .reports.gates import load_policy, parse_gates

    gates = parse_gates(plan.gates, plan.source or "plan") if plan.gates else []
    return gates + (load_policy(policy) if policy else [])


def _gate_report(report, gates: list, baseline: str | None, warn_only: bool, rewrite: bool) -> list:
    """Evaluate gates on one report and print the verdicts; with ``rewrite``, summary.md and
    report.html of the report are written again with the verdicts in them."""
    from .reports.gates import evaluate, summary_line
    from .reports.html import render_html
    from .reports.markdown import render_summary
    from .results.report import Report
    from .results.writer import atomic_write

    results = evaluate(gates, report, Report.load(baseline) if baseline else None, warn_only)
    for r in results:
        click.echo(f"  {r.status.upper():<4}  {r.gate.name}: {r.message}")
    click.echo(f"{report.model}: {summary_line(results)}")
    if rewrite and report.path is not None:
        atomic_write(
            report.path / "summary.md", lambda p: p.write_text(render_summary(report, results), encoding="utf-8")
        )
        atomic_write(
            report.path / "report.html", lambda p: p.write_text(render_html(report, results), encoding="utf-8")
        )
    return results


def _append_step_summary(report, results: list | None) -> None:
    from .reports.markdown import append_step_summary, render_summary

    append_step_summary(render_summary(report, results))


def _demo_plan() -> str | None:
    for candidate in (Path("audits/demo.toml"), Path(__file__).resolve().parents[1] / "audits" / "demo.toml"):
        if candidate.exists():
            return str(candidate)
    return None


def _plain_plan():
    from .plan import Plan

    return Plan()


def _size(text: str | None, option: str = "--input-size") -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        parts = [int(v) for v in text.lower().split("x")]  # range checked with the plan (exit 4)
        h, w = parts * 2 if option == "--center-crop" and len(parts) == 1 else parts
    except ValueError as exc:
        raise UsageError(f"{option} takes HxW, e.g. 224x224, got '{text}'") from exc
    return h, w


def _print_headlines(report) -> None:
    from .reports.report import headlines
    from .reports.scorecard import headline_text

    for check, h in headlines(report).items():
        click.echo(f"  {check:<18} {h.label}: {headline_text(h.value, h.ci_low, h.ci_high, h.kind)}")


@main.command("list")
@click.option(
    "--options",
    "options_of",
    metavar="CHECK",
    help="Print the options of CHECK (or of every check with `all`): type, default, range or choices, unit, meaning.",
)
@debug_option
@handle_errors
def list_command(options_of: str | None, debug: bool) -> None:
    """List the checks, built-in datasets and demo models."""
    if options_of is not None:
        _print_options(options_of)
        return
    from .checks import load_registry
    from .data import (
        BUILTINS,
        bias_sets,  # noqa: F401
    )
    from .data.builtin import load_builtin  # noqa: F401  (registers every built-in set)
    from .models import zoo

    registry = load_registry()
    sections = {
        "checks": [(name, cls.title) for name, cls in registry.items()],
        "check families (for --checks; 'all' selects every check)": [
            (family.replace(" ", "-"), ", ".join(n for n, c in sorted(registry.items()) if c.family == family))
            for family in sorted({c.family for c in registry.values()})
        ],
        "datasets": [(name, builtin.description) for name, builtin in sorted(BUILTINS.items())],
        "demo models": [(f"demo:{recipe.name}", recipe.description) for recipe in zoo.list_demos()],
    }
    width = max(len(name) for entries in sections.values() for name, _ in entries) + 2
    for title, entries in sections.items():
        click.echo(f"{title}:")
        for name, text in entries:
            click.echo(f"  {name:<{width}}{text}")


def _print_options(name: str) -> None:
    """The option table of one check, or of every check for ``all``, as aligned text."""
    from .checks import get_check, load_registry
    from .options import COLUMNS, option_rows, rules_of

    registry = load_registry()
    checks = list(registry.values()) if name == "all" else [get_check(name)]
    for i, check in enumerate(checks):
        rows = option_rows(check.Config)
        click.echo(
            ("\n" if i else "") + f"options of {check.name} ([checks.{check.name}], --set {check.name}.OPTION=VALUE):"
        )
        if not rows:
            click.echo("  (none)")
            continue
        table = [dict(zip(COLUMNS, COLUMNS, strict=True)), *rows]
        widths = {c: min(max(len(r[c]) for r in table), 28) for c in COLUMNS[:-1]}
        for row in table:
            cells = [f"{row[c]:<{widths[c]}}" for c in COLUMNS[:-1]]
            click.echo(("  " + "  ".join(cells) + "  " + row[COLUMNS[-1]]).rstrip())
        for rule in rules_of(check.Config):
            click.echo(f"  also checked: {rule.describe().replace('`', '')}")


@main.command()
@click.option(
    "--data",
    "data_spec",
    required=True,
    help="Training data: an ImageFolder directory with train/ and test/, an .npz with x_train, or a built-in set.",
)
@click.option("--arch", default="mnist-cnn", show_default=True, help="Demo architecture to train.")
@click.option("--epochs", type=click.IntRange(min=1), default=12, show_default=True, help="Training epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Minibatch size.")
@click.option("--lr", type=float, default=3e-3, show_default=True, help="Peak learning rate (Adam, one-cycle).")
@click.option(
    "--shift", type=click.IntRange(min=0), default=2, show_default=True, help="Random-shift augmentation in pixels."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Where to save the state_dict (.pt).")
@debug_option
@handle_errors
def train(
    data_spec: str, arch: str, epochs: int, batch_size: int, lr: float, shift: int, seed: int, out: str, debug: bool
) -> None:
    """Train a demo architecture on your own data (saves a state_dict to audit with --arch demo:ARCH)."""
    import io

    import torch

    from .data import DatasetRef
    from .models import zoo
    from .plan import SEED_MAX
    from .results.writer import atomic_write, refuse_kernel_file_system

    if not 0 <= seed <= SEED_MAX:
        raise InvalidInputError(f"seed must be an integer from 0 to {SEED_MAX}, got {seed}; choose one in that range")
    target = Path(out)
    refuse_kernel_file_system(target)
    if not target.absolute().parent.is_dir():
        folder = target.absolute().parent
        raise InvalidInputError(f"--out {out}: folder {folder} does not exist; create it or choose another --out")
    data = DatasetRef(data_spec).load()
    if data.train is None or len(data.train) == 0:
        raise InvalidInputError(
            f"dataset '{data_spec}' has no training split; use ROOT/train/<class>/ and ROOT/test/<class>/"
        )
    blob = zoo.train_model(arch, data, epochs, batch_size, lr, shift, seed, log=lambda m: log.info(m))
    buffer = io.BytesIO()  # saved through Python's file writes, so a full or read-only disk is a one-line exit 4
    torch.save(blob["state_dict"], buffer)
    atomic_write(target, lambda p: p.write_bytes(buffer.getvalue()))
    info = blob["info"]
    click.echo(f"wrote {out}: test accuracy {info['test_accuracy']:.4f} ({info['train_seconds']:.1f} s)")
    click.echo(f"audit it with: robustcnn audit --model {out} --arch demo:{arch} --data {data_spec}")


@main.group()
def report() -> None:
    """Read report directories."""


@report.command("show")
@click.argument("directory", type=click.Path(file_okay=False))
@debug_option
@handle_errors
def report_show(directory: str, debug: bool) -> None:
    """Print a report's scorecard."""
    from .reports.scorecard import partial_note, scorecard, scorecard_text
    from .results.report import Report

    report = Report.load(directory, partial=True)
    if partial_note(report):
        click.echo(partial_note(report))
    click.echo(scorecard_text(scorecard(report)))


@main.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option(
    "--policy",
    required=True,
    type=click.Path(dir_okay=False),
    help="Gate policy: a TOML file with [[gate]] tables (a plan file works too).",
)
@click.option(
    "--baseline", type=click.Path(file_okay=False), help="Baseline report directory for max_drop / max_rise gates."
)
@click.option("--junit", type=click.Path(dir_okay=False), help="Write JUnit XML (one testcase per gate) to this file.")
@click.option(
    "--markdown",
    type=click.Path(dir_okay=False),
    help="Write the verdicts, scorecard and key tables as markdown to this file.",
)
@click.option("--warn-only", is_flag=True, help="Report failing gates as warnings and exit 0.")
@debug_option
@handle_errors
def gate(
    directory: str,
    policy: str,
    baseline: str | None,
    junit: str | None,
    markdown: str | None,
    warn_only: bool,
    debug: bool,
) -> None:
    """Check a report against a gate policy. Exit 0: all gates hold; 1: a gate failed;
    4: invalid policy (a gate matching no row is invalid); 5: nothing to evaluate."""
    from .reports.gates import exit_code, load_policy, write_junit
    from .reports.markdown import append_step_summary, render_summary
    from .results.report import Report

    gates = load_policy(policy)
    report = Report.load(directory)
    results = _gate_report(report, gates, baseline, warn_only, rewrite=False)
    if junit:
        write_junit(results, junit, suite=report.model)
        click.echo(f"wrote {junit}")
    text = render_summary(report, results)
    if markdown:
        Path(markdown).write_text(text, encoding="utf-8")
        click.echo(f"wrote {markdown}")
    append_step_summary(text)
    sys.exit(exit_code(results))


@main.command("merge")
@click.argument("directories", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option(
    "--out", required=True, type=click.Path(file_okay=False), help="Report folder (several models: one each under it)."
)
@click.option(
    "--executor", default="local", show_default=True, help="Where the remaining tasks run: local, processes or ray."
)
@click.option(
    "--workers", type=click.IntRange(min=1), help="Worker processes, or Ray actors (and a local Ray runtime's CPUs)."
)
@click.option("--ray-address", help="Join this Ray cluster (HOST:PORT) instead of a local runtime.")
@click.option("--force", is_flag=True, help="Write into a non-empty --out that is not a robustcnn report.")
@click.option("--trust-model", is_flag=True, help="Needed when the shards loaded a model with --trust-model.")
@click.option("--no-progress", is_flag=True, help="Do not show a progress bar.")
@debug_option
@handle_errors
def merge_command(
    directories: tuple[str, ...],
    out: str,
    executor: str,
    workers: int | None,
    ray_address: str | None,
    force: bool,
    trust_model: bool,
    no_progress: bool,
    debug: bool,
) -> None:
    """Assemble the report of an `audit --shard I/N` run from all N shard folders: checks that they
    come from one plan and robustcnn version and that no slice or fragment is missing, then computes
    the summaries and the tasks left to the merge."""
    from .reports.report import report_files
    from .sharding import merge, read_shards

    plan, stores = read_shards([Path(d) for d in directories], trust_model)
    if len(plan.models) > 1:
        from .reports.index_page import check_index_target

        check_index_target(Path(out))
    progress = not no_progress and sys.stderr.isatty()
    with _engine(executor, workers, ray_address, plan) as engine:
        reports = merge(
            plan,
            stores,
            Path(out),
            engine,
            force,
            rendered=report_files(),
            progress=progress,
            lines=not no_progress and not progress,
        )
    for report in reports:
        click.echo(f"wrote {report.path}/ ({len(report.table)} rows)")
        _print_headlines(report)
    if len(reports) > 1:
        from .reports.index_page import write_index

        index, table = write_index(Path(out), reports)
        click.echo(f"wrote {index} and {table} (comparison of {len(reports)} models)")


@report.command("compare")
@click.argument("directories", nargs=-1, required=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default="comparison.csv",
    show_default=True,
    help="Write every row side by side here (.csv, .md, .html or .parquet).",
)
@debug_option
@handle_errors
def report_compare(directories: tuple[str, ...], out: str, debug: bool) -> None:
    """Compare report directories (paths or globs): print the headlines side by side and write
    every row, with the change of each model against the first."""
    from .reports.compare import compare_headlines, compare_tables, write_comparison
    from .reports.scorecard import format_value
    from .results.report import Report, expand_report_paths

    reports = []
    for path in expand_report_paths(directories):
        try:
            reports.append(Report.load(path))
        except InvalidInputError as exc:
            click.echo(f"robustcnn: skipped {path}: {exc}", err=True)
    if not reports:
        raise InvalidInputError(f"no complete robustcnn report among {' '.join(directories)}")
    click.echo(compare_headlines(reports).map(format_value).to_string(index=False))
    table = compare_tables(reports)
    write_comparison(table, out)
    click.echo(f"wrote {out} ({len(table)} rows)")

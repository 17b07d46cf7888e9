"""Plan -> tasks -> executor -> fragments -> merged tables.

Each task is one check on one shard of the evaluation images (or the whole check when it is
not per-sample). ``run_task`` is a pure function of the task and the loaded inputs, so an
executor other than the in-process one can run tasks elsewhere later. Completed fragments are
cached by a content key (model and data fingerprints, check version and config, seed, shard,
robustcnn version) in the run's staging folder beside ``<out>`` (see ``results.writer``), and
kept in ``<out>/.fragments`` once the report is complete; that is what ``--resume`` reuses.
"""

from __future__ import annotations

import hashlib
import logging
import platform
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from . import __version__
from ._runtime import release_free_memory
from .artifacts import ArtifactKey, Artifacts
from .batch_backoff import run_with_backoff
from .checks import AuditData, Check, CheckContext, CheckOutput, SampleCheck, get_check, run_order
from .data import DataIndex, DatasetRef, Split, Target
from .data.index import BadImage
from .data.sample import SampledData, probe_eval, sample_data
from .errors import EnvironmentProblemError, InvalidInputError, NothingEvaluatedError, UsageError
from .estimate import Calibration, CheckEstimate, CostInputs, Eta, calibrate, estimate, plan_table, with_backward
from .fragments import CorruptFragmentError, FragmentStore, content_key
from .models import AuditedModel, ModelRef
from .models.batching import BatchChoice, choose_batch_size
from .plan import Plan
from .progress import Budget, BudgetSpent, RunProgress
from .results import writer
from .results.report import Report
from .results.schema import SCHEMA_VERSION, combine, tidy

if TYPE_CHECKING:
    from .executors import Engine, Handle, Job

log = logging.getLogger("robustcnn")
_SUMMARY_LOCK = threading.Lock()
LAYOUT_IMAGES = 16  # images that decide the memory layout (``AuditedModel.choose_layout``) and time the model


@dataclass
class Task:
    """One unit of work: a check on a shard (``indices`` into the evaluation split) or whole."""

    check: str
    shard: int | None
    indices: np.ndarray | None
    key: str


@dataclass
class Prepared:
    """A loaded model and the data adapted to it, plus what was done to get there."""

    model: AuditedModel
    data: AuditData
    image_data: SampledData
    eval_index: np.ndarray
    batch: BatchChoice
    calibration: Calibration | None = None

    @property
    def batch_size(self) -> int:
        return self.batch.size


def prepare(
    model_ref: ModelRef, data_ref: DatasetRef, n: int | None, seed: int, device: str, batch_size: int | None = None
) -> Prepared:
    """Index the data, draw the evaluation sample, load the model, decode only the sampled images
    at the model's input, and validate. The training split is decoded when a check first reads it.
    Without ``batch_size`` the batch size is chosen from the activation memory one image takes
    (``models.batching``).

    While the sample decodes (in threads), the model is validated and its memory layout chosen on the
    first images of the draw, decoded first; its speed is calibrated (``estimate.calibrate``) on them
    once decoding is done, so that the timing does not share the cores with decoding; if
    an unreadable file changed the draw, validation and layout are repeated on the final sample."""
    _check_device(device)
    index = data_ref.index()
    if n is not None and n > len(index.test):
        total = len(index.test)
        log.warning("--n %d is more than the %d test images of %s; evaluating all %d", n, total, data_ref.spec, total)
    probe = probe_eval(index, n, seed)
    model = model_ref.load(
        num_classes=index.num_classes, in_channels=probe.channels, input_size=model_ref.input_size, device=device
    )
    if model.input_size is None:
        model.input_size = probe.input_size(data_ref.policy)  # type: ignore[assignment]
    target = Target(model.in_channels, tuple(model.input_size), data_ref.policy)  # type: ignore[arg-type]
    _check_labels(index, model)
    head, head_notes = [int(p) for p in probe.positions[:LAYOUT_IMAGES]], []
    read = index.test.source.read(head, target, head_notes)
    first = [r for r in read.values() if not isinstance(r, BadImage)]
    with ThreadPoolExecutor(max_workers=1) as pool:
        decoding = pool.submit(sample_data, index, probe, n, seed, target, data_ref.train_n, (read, head_notes))
        batch = None
        if len(first) == len(head):
            x = torch.stack([image for image, _ in first])
            model.validate(x[:2])
            batch = choose_batch_size(model, x[:2], batch_size)
            model.choose_layout(x)
        data = decoding.result()
    if len(first) != len(head) or not np.array_equal(data.positions[: len(head)], probe.positions[: len(head)]):
        x = data.eval.x[:LAYOUT_IMAGES]
        model.validate(x[:2])
        batch = choose_batch_size(model, x[:2], batch_size)
        model.choose_layout(x)
    release_free_memory()
    # timed once decoding is done: beside the decoding threads, calls looked up to 1.7x slower on 2 cores
    calibration = calibrate(model, x, batch.size, backward=False)  # type: ignore[union-attr]
    classes = list(index.classes) + [str(k) for k in range(index.num_classes, model.num_classes)]
    audit_data = AuditData(index.name, classes, data.eval, data.train)  # type: ignore[arg-type]
    release_free_memory()  # what decoding and calibrating freed goes back to the system before the checks
    return Prepared(model, audit_data, data, data.positions, batch, calibration)


def _check_device(device: str) -> None:
    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise UsageError(f"unknown device '{device}'; use cpu, cuda or cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device} was asked for but torch sees no CUDA GPU; use --device cpu")
    if ":" in device and int(device.split(":")[1]) >= torch.cuda.device_count():
        raise UsageError(f"--device {device}: torch sees {torch.cuda.device_count()} CUDA GPU(s), numbered from 0")


def _check_labels(data: DataIndex, model: AuditedModel) -> None:
    for split in (data.test, data.train):
        if split is None or len(split) == 0:
            continue
        low, top = int(split.y.min()), int(split.y.max())
        if low < 0:
            raise InvalidInputError(f"dataset labels include {low}; labels must be class indices 0, 1, ...: fix them")
        if top >= model.num_classes:
            raise InvalidInputError(
                f"dataset labels reach {top} but the model has {model.num_classes} classes; "
                "use a dataset with matching classes or pass --num-classes"
            )


def _preflight(check: Check, prepared: Prepared, plan: Plan) -> bool:
    """Whether ``check`` can run on this model and data; a check the plan selected by name raises
    ``InvalidInputError`` when it cannot, one that came from ``all``, a family or a profile is skipped."""
    try:
        if check.needs_train and prepared.data.train is None:
            raise InvalidInputError(
                f"check '{check.name}' needs a training split, and dataset '{plan.data}' has none (add ROOT/train and ROOT/test folders)"
            )
        check.preflight(prepared.model, prepared.data)
    except InvalidInputError as exc:
        if check.name not in plan.optional:
            raise
        log.info("skipping %s: %s", check.name, exc)
        return False
    return True


def build_tasks(
    checks: list[Check], prepared: Prepared, base_key: tuple, shard_size: int | None
) -> dict[str, list[Task]]:
    """Tasks per check, in run order; per-sample checks are split into shards.

    A check's key includes the keys of the checks whose artifacts it needs or uses.
    """
    tasks: dict[str, list[Task]] = {}
    ids = prepared.data.eval.ids
    provided: dict[str, str] = {}  # artifact name -> content key of its provider's tasks
    for check in checks:
        upstream = tuple(dict.fromkeys(provided[k.name] for k in (*check.needs, *check.uses) if k.name in provided))
        check_key = (*base_key, check.name, check.version, check.config_dict(), upstream)
        if isinstance(check, SampleCheck):
            size = shard_size or check.shard_size
            shards = [np.arange(i, min(i + size, len(ids))) for i in range(0, len(ids), size)]
            tasks[check.name] = [
                Task(check.name, s, idx, content_key(*check_key, "shard", s, _ids_hash(ids, idx)))
                for s, idx in enumerate(shards)
            ]
        else:
            tasks[check.name] = [Task(check.name, None, None, content_key(*check_key, "whole", _ids_hash(ids, None)))]
        provided.update((k.name, content_key(*(t.key for t in tasks[check.name]))) for k in check.provides)
    return tasks


def _ids_hash(ids: list[str], idx: np.ndarray | None) -> str:
    chosen = ids if idx is None else [ids[i] for i in idx]
    return hashlib.sha256("\n".join(chosen).encode()).hexdigest()[:16]


def run_task(task: Task, check: Check, prepared: Prepared, ctx: CheckContext) -> tuple[CheckOutput, dict[str, Any]]:
    """Run one task and measure its cost (images forward/backward, seconds). On out-of-memory the
    task runs again with half the batch (``batch_backoff``); the batch size that fitted is recorded
    as a warning, and the numbers do not depend on it (random streams are per sample)."""
    model, data = prepared.model, prepared.data
    before = model.counter.snapshot()
    started = time.perf_counter()
    asked = ctx.batch_size

    def attempt(batch_size: int) -> CheckOutput:
        torch.manual_seed(ctx.seed)
        ctx.batch_size = batch_size
        if task.indices is not None:
            assert isinstance(check, SampleCheck)
            return check.measure(model, data.eval.subset(task.indices), ctx)
        return check.run(model, data, ctx)

    output, fitted = run_with_backoff(attempt, asked, ctx.device)
    release_free_memory()
    if fitted != asked:
        ctx.warn(f"out of {ctx.device} memory at batch size {asked}; this task ran at batch size {fitted}")
    output.warnings = list(dict.fromkeys(output.warnings + ctx.warnings))
    after = model.counter.snapshot()
    cost = {"seconds": time.perf_counter() - started, "forward": after[0] - before[0], "backward": after[1] - before[1]}
    return output, cost


class _CountingStore(FragmentStore):
    """The fragment store, telling ``on_save`` about every fragment this run computed."""

    def __init__(self, root: Path, on_save: Callable[[], None]) -> None:
        super().__init__(root)
        self.on_save = on_save

    def save(self, key: str, output: CheckOutput, cost: dict[str, Any]) -> None:
        super().save(key, output, cost)
        self.on_save()


class LocalExecutor:
    """Runs tasks through an engine (``executors``; in this process by default), reusing cached
    fragments (also those of ``sources``, e.g. the shards ``robustcnn merge`` assembles) and
    writing every new fragment here, in the driver."""

    def __init__(
        self,
        store: FragmentStore,
        resume: bool,
        progress: Callable[[int], None],
        engine: Engine | None = None,
        job: Job | None = None,
        sources: Iterable[FragmentStore] = (),
    ) -> None:
        self.store = store
        self.resume = resume
        self.progress = progress
        self.engine = engine
        self.job = job
        self.sources = list(sources)

    def run_tasks(
        self, tasks: list[Task], check: Check, prepared: Prepared, context: Callable[[], CheckContext]
    ) -> list[tuple[CheckOutput, dict[str, Any], bool]]:
        """Run ``tasks`` of one check: a parallel engine gets every missing task at once (it runs them
        side by side), the local one computes each when asked; results come back in task order."""

        if self.engine is None:
            return [self.run(t, lambda t=t: run_task(t, check, prepared, context())) for t in tasks]
        engine = self.engine

        def submit(t: Task) -> Handle:
            return engine.submit(self.job, check, t, context(), prepared)

        if not engine.parallel:
            return [self.run(t, lambda t=t: submit(t).result()) for t in tasks]
        found = {t.key: self._cached(t) for t in tasks}
        handles = {t.key: submit(t) for t in tasks if found[t.key] is None}
        results = []
        for task in tasks:
            hit = found[task.key]
            if hit is None:
                hit = handles[task.key].result()
                self.store.save(task.key, *hit)
            self.progress(1)
            results.append((*hit, found[task.key] is not None))
        return results

    def _cached(self, task: Task) -> tuple[CheckOutput, dict[str, Any]] | None:
        if not self.resume:
            return None
        for store in [self.store, *self.sources]:
            if not store.has(task.key):
                continue
            try:
                output, cost = store.load(task.key)
            except CorruptFragmentError as exc:
                where = f"{task.check}, shard {task.shard}" if task.shard is not None else task.check
                log.warning("fragment %s (%s) is damaged (%s); recomputing it", store.path(task.key), where, exc)
                if store is self.store:
                    store.discard(task.key)
                continue
            if store is not self.store:
                self.store.save(task.key, output, cost)
            return output, cost
        return None

    def run(
        self, task: Task, compute: Callable[[], tuple[CheckOutput, dict[str, Any]]]
    ) -> tuple[CheckOutput, dict[str, Any], bool]:
        found = self._cached(task)
        if found is not None:
            self.progress(1)
            return (*found, True)
        output, cost = compute()
        self.store.save(task.key, output, cost)
        self.progress(1)
        return output, cost, False


def plan_model(plan: Plan, model_ref: ModelRef) -> tuple[list[Check], Prepared, dict[str, list[Task]]]:
    """The checks of ``plan`` that can run on one model, its prepared inputs, and the tasks of each
    check, as ``_audit_into`` makes them: the same for every executor and every ``--shard``."""
    _, prepared, checks = _prepare_checks(plan, model_ref)
    base_key = (__version__, model_ref.fingerprint(), prepared.image_data.fingerprint(), plan.seed, plan.device)
    return checks, prepared, build_tasks(checks, prepared, base_key, plan.shard_size)


def audit_model(
    plan: Plan,
    model_ref: ModelRef,
    out: Path,
    resume: bool = False,
    progress: bool = False,
    force: bool = False,
    lines: bool = False,
    budget: Budget | None = None,
    rendered: Mapping[str, Callable[[Report], str]] | None = None,
    engine: Engine | None = None,
    sources: Iterable[FragmentStore] = (),
) -> Report:
    """Audit one model according to ``plan`` and write its report directory (see ``results.writer``:
    the work happens in a staging folder, swapped into ``out`` at the end; ``force`` allows a
    non-empty ``out`` that is not a report). ``progress`` shows a bar per check; ``lines`` prints a
    line per finished task to stderr instead (for logs, where a bar is noise); either prints the plan
    with its estimated cost first. Once ``budget`` (default: ``plan.max_minutes`` from now) is spent,
    the run stops after the task it is computing and writes a partial report (``status`` "partial",
    the checks not run listed); ``resume`` finishes it. ``rendered``: the files rendered from the
    report and their renderers (``reports.report.report_files()``)."""
    staging = writer.begin(out, resume, force)
    try:
        budget = budget or Budget(plan.max_minutes)
        return _audit_into(plan, model_ref, out, staging, resume, progress, lines, budget, rendered, engine, sources)
    except EnvironmentProblemError as exc:
        staging.abandon()
        if staging.fragments.is_dir():
            raise EnvironmentProblemError(f"{exc}; finished work is kept in {staging.path} for --resume") from exc
        raise
    except BaseException:
        staging.abandon()
        raise


def _audit_into(
    plan: Plan,
    model_ref: ModelRef,
    out: Path,
    staging: writer.Staging,
    resume: bool,
    progress: bool,
    lines: bool,
    budget: Budget,
    rendered: Mapping[str, Callable[[Report], str]] | None,
    engine: Engine | None = None,
    sources: Iterable[FragmentStore] = (),
) -> Report:
    started_at = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    data_ref, prepared, checks = _prepare_checks(plan, model_ref)
    baseline = Report.load(plan.baseline).table if plan.baseline else None
    base_key = (__version__, model_ref.fingerprint(), prepared.image_data.fingerprint(), plan.seed, plan.device)
    tasks = build_tasks(checks, prepared, base_key, plan.shard_size)
    estimates = estimate_checks(checks, tasks, prepared, plan)
    if progress or lines:
        print(f"robustcnn: plan for {model_ref.display_name()}:", file=sys.stderr)
        print(plan_table(list(estimates.values()), prepared.calibration), file=sys.stderr)
        print(prepared.batch.describe(), file=sys.stderr, flush=True)
    if prepared.data.train is not None and any(c.reads_train for c in checks):
        prepared.data.train.prefetch()  # type: ignore[union-attr]  (a LazySplit: decoded while the first checks run)
    total = sum(len(t) for t in tasks.values()) + sum(isinstance(c, SampleCheck) for c in checks)
    eta = Eta({name: e.seconds for name, e in estimates.items()})
    shown = RunProgress(model_ref.display_name(), total, eta, progress, lines, budget)
    store = _CountingStore(staging.fragments, shown.computed_task)
    job = engine.job(plan, model_ref) if engine is not None else None
    executor = LocalExecutor(store, resume, shown.task_done, engine, job, sources)
    shared_artifacts = Artifacts()
    frames, sample_frames, figures, check_meta = [], [], {}, {}
    stopped_after: float | None = None
    for check in checks:
        planned = {"version": check.version, "config": check.config_dict(), "estimate": estimates[check.name].to_dict()}
        if stopped_after is None and shown.budget_spent():
            stopped_after = time.perf_counter() - t0
        if stopped_after is None:
            shown.start_check(check.name, len(tasks[check.name]) + isinstance(check, SampleCheck))
            try:
                output, cost, reused = _run_check(
                    check, tasks[check.name], prepared, plan, executor, shared_artifacts, baseline
                )
            except BudgetSpent:
                stopped_after = time.perf_counter() - t0
                shown.close()
        if stopped_after is not None:
            check_meta[check.name] = {**planned, "status": "not run", "tasks": len(tasks[check.name])}
            continue
        shown.finish_check(check.name, cost["seconds"])
        shared_artifacts.update(output.artifacts.only(check.provides))
        frames.append(tidy(output.rows, prepared.model.name, check.name))
        if output.samples is not None and len(output.samples):
            sample_frames.append(output.samples.assign(model=prepared.model.name, check=check.name))
        figures[check.name] = output.figures
        check_meta[check.name] = {
            **planned,
            "status": "complete",
            "rows": len(output.rows),
            "warnings": output.warnings,
            "info": output.info,
            "resumed_tasks": reused,
            "tasks": len(tasks[check.name]),
            **cost,
        }
        for w in output.warnings:
            log.warning("%s: %s", check.name, w)
    shown.close()
    if engine is not None:
        engine.release(job)
    table = combine(frames)
    if table.empty and stopped_after is not None:
        raise NothingEvaluatedError(
            f"--max-minutes {plan.max_minutes:g} was spent before any check finished; nothing was evaluated "
            "(rerun with --resume and a larger --max-minutes to continue)"
        )
    if table.empty:
        raise NothingEvaluatedError("no check produced a result; nothing was evaluated")
    samples = _combine_samples(sample_frames)
    meta = _meta(plan, model_ref, data_ref, prepared, check_meta, started_at, time.perf_counter() - t0)
    if stopped_after is not None:
        not_run = [name for name, info in check_meta.items() if info["status"] == "not run"]
        meta["status"] = "partial"
        meta["stopped"] = {"max_minutes": plan.max_minutes, "after_seconds": stopped_after, "checks_not_run": not_run}
        log.warning(
            "--max-minutes %g spent after %.0f s: the report is partial; not run: %s (rerun with --resume to finish)",
            plan.max_minutes,
            stopped_after,
            ", ".join(not_run),
        )
    return writer.write_report(out, table, samples, meta, figures, staging, rendered)


def _prepare_checks(plan: Plan, model_ref: ModelRef) -> tuple[DatasetRef, Prepared, list[Check]]:
    """The plan's checks in run order, the data and model prepared, and the checks that can run on them."""
    checks = run_order([get_check(name).from_options(plan.options.get(name)) for name in plan.checks])
    for name in plan.options:
        if name not in plan.checks:
            log.warning("options given for check '%s', which is not selected", name)
    data_ref = DatasetRef(plan.data, plan.policy, plan.train_n)
    prepared = prepare(model_ref, data_ref, plan.n, plan.seed, plan.device, plan.batch_size)
    return data_ref, prepared, run_order([c for c in checks if _preflight(c, prepared, plan)])


def estimate_checks(
    checks: list[Check], tasks: dict[str, list[Task]], prepared: Prepared, plan: Plan
) -> dict[str, CheckEstimate]:
    """The plan line of every check: its images, tasks, passes and estimated seconds."""
    data, model = prepared.data, prepared.model
    n_train = len(data.train) if data.train is not None else 0
    shape = (model.in_channels, *model.input_size)  # type: ignore[misc]
    accuracy = _accuracy_of_a_few(model, data.eval)
    inputs = [
        CostInputs(
            len(data.eval),
            shape,
            model.num_classes,
            n_train,
            prepared.batch_size,
            tuple(c.name for c in checks[:i]),
            accuracy,
        )
        for i in range(len(checks))
    ]
    passes = [estimate(c, i, len(tasks[c.name]), None).passes for c, i in zip(checks, inputs, strict=True)]
    if prepared.calibration is not None and any(p and p.backward for p in passes):
        prepared.calibration = with_backward(
            prepared.calibration, model, data.eval.x[:LAYOUT_IMAGES], prepared.batch_size
        )
    return {
        c.name: estimate(c, i, len(tasks[c.name]), prepared.calibration) for c, i in zip(checks, inputs, strict=True)
    }


def _accuracy_of_a_few(model: AuditedModel, split: Split, k: int = LAYOUT_IMAGES) -> float:
    """The share of ``k`` evenly spread evaluation images the model classifies correctly (counter untouched)."""
    if not len(split):
        return 1.0
    idx = torch.from_numpy(np.linspace(0, len(split) - 1, min(k, len(split))).round().astype(np.int64))
    counted = model.counter.snapshot()
    try:
        pred = model.logits(split.x[idx]).argmax(1)
    finally:
        model.counter.forward, model.counter.backward = counted
    return float((pred == split.y[idx]).float().mean())


def estimate_model(plan: Plan, model_ref: ModelRef) -> str:
    """The plan and estimated cost of auditing ``model_ref``, as printed before a run (``--dry-run``):
    the model and data are loaded and the sample decoded, nothing is written."""
    _, prepared, checks = _prepare_checks(plan, model_ref)
    tasks = build_tasks(checks, prepared, ("dry-run",), plan.shard_size)
    table = plan_table(list(estimate_checks(checks, tasks, prepared, plan).values()), prepared.calibration)
    return f"{table}\n{prepared.batch.describe()}"


def _run_check(
    check: Check,
    tasks: list[Task],
    prepared: Prepared,
    plan: Plan,
    executor: LocalExecutor,
    artifacts: Artifacts,
    baseline: pd.DataFrame | None,
) -> tuple[CheckOutput, dict[str, float], int]:
    def context() -> CheckContext:
        consumed = artifacts.only((*check.needs, *check.uses))
        return CheckContext(
            plan.device, plan.seed, prepared.batch_size, False, consumed, baseline, eval_size=len(prepared.data.eval)
        )

    if not isinstance(check, SampleCheck):
        output, cost, reused = executor.run_tasks(tasks, check, prepared, context)[0]
        return output, cost, int(reused)
    parts, costs, reused = [], [], 0
    for output, cost, was_cached in executor.run_tasks(tasks, check, prepared, context):
        parts.append(output)
        costs.append(cost)
        reused += was_cached
    samples = (
        pd.concat([p.samples for p in parts if p.samples is not None], ignore_index=True) if parts else pd.DataFrame()
    )
    shard_artifacts = _concat_artifacts(p.artifacts for p in parts)
    summary_task = Task(check.name, None, None, content_key("summary", *(t.key for t in tasks)))

    def summarize() -> tuple[CheckOutput, dict[str, Any]]:
        with _SUMMARY_LOCK:  # models audited side by side share the driver; figures (pyplot) are not thread-safe
            return _summarize()

    def _summarize() -> tuple[CheckOutput, dict[str, Any]]:
        ctx = context()
        before = prepared.model.counter.snapshot()
        started = time.perf_counter()
        out = check.summarize(samples, shard_artifacts, prepared.data, ctx)
        after = prepared.model.counter.snapshot()
        out.warnings = list(dict.fromkeys([w for p in parts for w in p.warnings] + out.warnings + ctx.warnings))
        merged = Artifacts()
        merged.update(shard_artifacts)
        merged.update(out.artifacts)
        out.artifacts = merged
        return out, {
            "seconds": time.perf_counter() - started,
            "forward": after[0] - before[0],
            "backward": after[1] - before[1],
        }

    final, cost, was_cached = executor.run(summary_task, summarize)
    final.samples = samples if final.samples is None else final.samples
    costs.append(cost)
    total = {k: sum(c[k] for c in costs) for k in ("seconds", "forward", "backward")}
    return final, total, reused + int(was_cached)


def _concat_artifacts(parts: Iterable[Artifacts]) -> Artifacts:
    merged: dict[ArtifactKey[Any], list[torch.Tensor]] = {}
    for part in parts:
        for k, v in part.items():
            merged.setdefault(k, []).append(v)
    return Artifacts({k: torch.cat(v) if v[0].dim() > 0 else torch.stack(v) for k, v in merged.items()})


def _combine_samples(frames: list[pd.DataFrame]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame(columns=["model", "check", "sample"])
    df = pd.concat(frames, ignore_index=True, sort=False)
    first = [c for c in ("model", "check", "sample") if c in df.columns]
    return df[first + [c for c in df.columns if c not in first]]


def _meta(
    plan: Plan,
    model_ref: ModelRef,
    data_ref: DatasetRef,
    prepared: Prepared,
    checks: dict,
    started_at: datetime,
    seconds: float,
) -> dict[str, Any]:
    model = prepared.model
    return {
        "schema_version": SCHEMA_VERSION,
        "robustcnn_version": __version__,
        "torch_version": str(torch.__version__),
        "python_version": sys.version.split()[0],
        "platform": platform.platform(),
        "model": {
            **model_ref.describe(),
            "num_classes": model.num_classes,
            "in_channels": model.in_channels,
            "input_size": list(model.input_size) if model.input_size else None,
            "outputs_probabilities": model.outputs_probabilities,
            "memory_format": model.memory_format,
        },
        "data": {
            **data_ref.describe(),
            "conversions": prepared.image_data.notes,
            "eval_n": len(prepared.data.eval),
            "eval_ids_sha256": hashlib.sha256("\n".join(prepared.data.eval.ids).encode()).hexdigest(),
        },
        "classes": prepared.data.classes,
        "seed": plan.seed,
        "device": plan.device,
        "plan": plan.to_dict(),
        "checks": checks,
        "started": started_at.isoformat(timespec="seconds"),
        "seconds": seconds,
        "work_seconds": sum(float(c.get("seconds") or 0.0) for c in checks.values()),
        "batch": prepared.batch.to_dict(),
        "calibration": prepared.calibration.to_dict() if prepared.calibration is not None else None,
        "estimated_seconds": sum(float(c["estimate"].get("seconds") or 0.0) for c in checks.values()),
    }


def default_out(model_ref: ModelRef, plan: Plan) -> Path:
    if plan.out and len(plan.models) > 1:
        return Path(plan.out) / model_ref.display_name()
    if plan.out:
        return Path(plan.out)
    return Path("reports") / model_ref.display_name()


def run_plan(
    plan: Plan,
    resume: bool = False,
    progress: bool = False,
    force: bool = False,
    lines: bool = False,
    rendered: Mapping[str, Callable[[Report], str]] | None = None,
    engine: Engine | None = None,
    sources: Iterable[FragmentStore] = (),
) -> list[Report]:
    """Audit every model of the plan; one report directory per model. ``plan.max_minutes`` holds for
    the whole run: a model not started when it is spent gets no report (a warning names it). A
    parallel ``engine`` audits the models side by side (each model's checks still run in order).
    ``rendered`` as in ``audit_model``."""
    names = [m.display_name() for m in plan.models]
    if len(set(names)) != len(names):
        raise InvalidInputError("two models of the plan share a name; give each a distinct name")
    budget, sources = Budget(plan.max_minutes), list(sources)

    def one(ref: ModelRef) -> Report | None:
        if ref is not plan.models[0] and budget.spent():
            log.warning(
                "--max-minutes spent: model %s not audited (rerun with --resume to continue)", ref.display_name()
            )
            return None
        return audit_model(
            plan, ref, default_out(ref, plan), resume, progress, force, lines, budget, rendered, engine, sources
        )

    if engine is None or not engine.parallel or len(plan.models) == 1:
        return [r for r in map(one, plan.models) if r is not None]
    side_by_side = min(len(plan.models), engine.slots or len(plan.models))
    with ThreadPoolExecutor(side_by_side, thread_name_prefix="robustcnn-model") as pool:
        futures = [pool.submit(one, ref) for ref in plan.models]
        try:
            return [r for r in (f.result() for f in futures) if r is not None]
        except BaseException:
            engine.close(cancel=True)  # the other models stop now; their finished work is kept for --resume
            for future in futures:
                future.cancel()
            raise

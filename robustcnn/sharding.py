"""Job arrays without an engine: ``audit --shard I/N`` computes one deterministic slice of the
task list and ``merge DIR...`` assembles the report (Slurm arrays, CI matrices).

The task list is every model's tasks in run order (model, check, shard); task ``j`` belongs to
shard ``j mod N + 1``, so slices are balanced and the same on every machine. A shard computes
the tasks of its slice that need nothing from other tasks. A task that reads an earlier check's
artifacts (e.g. ``confidence`` reading adversarial examples) touches a guard instead and is
left to the merge, as are the per-check summaries, which need every shard of the check.
``merge`` refuses folders of different plans, models or robustcnn versions, and a set with a
slice or a fragment missing (named); then it runs the audit with the shards' fragments reused,
so its tables are those of a one-process run.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from . import __version__
from .checks import CheckContext
from .errors import InvalidInputError, UsageError, os_errors
from .executors import Engine, Job
from .executors.base import DeferredTask, NeedsUpstream
from .fragments import CorruptFragmentError, FragmentStore, content_key
from .models import ModelRef
from .plan import Plan, validate_plan
from .results.report import Report
from .results.writer import atomic_write

MANIFEST = "shard.json"
FRAGMENTS = ".fragments"
MODEL_FIELDS = ("spec", "arch", "num_classes", "in_channels", "input_size", "mean", "std", "trust", "name")
PLAN_FIELDS = (
    "data",
    "n",
    "resize",
    "center_crop",
    "train_n",
    "seed",
    "device",
    "batch_size",
    "checks",
    "optional",
    "options",
    "baseline",
    "shard_size",
    "gates",
)


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` with 1 <= I <= N, else a one-line usage error."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise UsageError(f"--shard takes I/N with 1 <= I <= N, e.g. 2/4, got '{text}'")
    return int(match[1]), int(match[2])


class UpstreamArtifacts(Mapping):
    """``ctx.artifacts`` of a shard task: reading it means the task needs an earlier check's output."""

    def __getitem__(self, key: str) -> Any:
        raise NeedsUpstream(key)

    def __iter__(self) -> Iterator[str]:
        raise NeedsUpstream("*")

    def __len__(self) -> int:
        raise NeedsUpstream("*")

    def __contains__(self, key: object) -> bool:
        raise NeedsUpstream(str(key))


def plan_record(plan: Plan) -> dict[str, Any]:
    """Everything that decides the task list and results (not ``out``), as JSON."""
    models = []
    for ref in plan.models:
        if ref.module is not None:
            raise UsageError("--shard needs models given as files or demo:NAME, not in-memory modules")
        models.append(
            {k: list(v) if isinstance(v, tuple) else v for k, v in ((f, getattr(ref, f)) for f in MODEL_FIELDS)}
        )
    fields = {k: list(v) if isinstance(v, tuple) else v for k, v in ((f, getattr(plan, f)) for f in PLAN_FIELDS)}
    return {"models": models, **fields}


def plan_from_record(record: dict[str, Any], out: str, trust_model: bool = False) -> Plan:
    """The plan a shard folder records; a model the shards loaded with ``--trust-model`` (code in
    its file runs) is loaded again only when the merge is given ``--trust-model`` too."""
    models = [ModelRef(**{k: tuple(v) if isinstance(v, list) else v for k, v in m.items()}) for m in record["models"]]
    for ref in models:
        if ref.trust and not trust_model:
            raise InvalidInputError(
                f"the shards loaded model {ref.display_name()} with --trust-model (code in its file runs); "
                "give `robustcnn merge` --trust-model too if you trust it"
            )
    fields = {k: record[k] for k in PLAN_FIELDS}
    fields["center_crop"] = tuple(fields["center_crop"]) if fields["center_crop"] else None
    plan = Plan(models=models, out=out, **fields)
    validate_plan(plan)
    return plan


def plan_hash(plan: Plan) -> str:
    return content_key(plan_record(plan), [ref.fingerprint() for ref in plan.models])


def run_shard(plan: Plan, index: int, count: int, folder: Path, engine: Engine) -> tuple[Path, int, int]:
    """Compute slice ``index`` of ``count`` into ``folder`` (fragments, then ``shard.json`` last);
    return the folder and the numbers of tasks done and left to the merge."""
    from .runner import plan_model

    record, digest = plan_record(plan), plan_hash(plan)
    _claim(folder)
    store = FragmentStore(folder / FRAGMENTS)
    with os_errors(folder):
        store.root.mkdir(parents=True, exist_ok=True)
    baseline = Report.load(plan.baseline).table if plan.baseline else None
    position, pending = 0, []
    for ref in plan.models:
        checks, prepared, tasks = plan_model(plan, ref)
        job = Job.of(plan, ref)
        for number, check in enumerate(checks):
            for task in tasks[check.name]:
                mine = position % count == index - 1
                position += 1
                if not mine:
                    continue
                artifacts: Mapping = {} if number == 0 else UpstreamArtifacts()
                ctx = CheckContext(
                    plan.device,
                    plan.seed,
                    prepared.batch_size,
                    False,
                    artifacts,  # type: ignore[arg-type]
                    baseline,
                    eval_size=len(prepared.data.eval),
                )
                pending.append((ref, check.name, task, _submit(engine, job, check, task, ctx, prepared)))
    listed, done = [], 0
    for ref, check_name, task, handle in pending:
        status = "deferred"
        if handle is not None:
            try:
                store.save(task.key, *handle.result())
                status, done = "done", done + 1
            except DeferredTask:
                pass
        listed.append(
            {"key": task.key, "model": ref.display_name(), "check": check_name, "shard": task.shard, "status": status}
        )
    manifest = {
        "robustcnn_version": __version__,
        "plan_hash": digest,
        "plan": record,
        "shard": index,
        "of": count,
        "tasks": listed,
    }
    atomic_write(folder / MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=1, default=str)))
    return folder, done, len(pending) - done


def _submit(engine: Engine, job: Job, check: Any, task: Any, ctx: CheckContext, prepared: Any) -> Any:
    try:
        return engine.submit(job, check, task, ctx, prepared)
    except DeferredTask:  # the local engine runs a task when it is submitted
        return None


def _claim(folder: Path) -> None:
    """A shard folder is new, empty, or an earlier shard folder (its fragments are replaced)."""
    if folder.exists() and not folder.is_dir():
        raise InvalidInputError(f"--out {folder} is a file, not a folder; choose a folder for the shard")
    if folder.is_dir():
        entries = {p.name for p in folder.iterdir()}
        if entries - {MANIFEST, FRAGMENTS}:
            raise InvalidInputError(
                f"--out {folder} is not empty and is not a robustcnn shard folder; choose a new or empty folder"
            )
        with os_errors(folder):
            (folder / MANIFEST).unlink(missing_ok=True)  # not complete until this run writes it again


def read_shards(folders: list[Path], trust_model: bool = False) -> tuple[Plan, list[FragmentStore]]:
    """Check that ``folders`` are the complete slices of one plan; the plan and their fragment stores."""
    try:
        return _read_shards(folders, trust_model)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidInputError(
            f"a {MANIFEST} among {', '.join(map(str, folders))} is malformed ({exc!r}); rerun that shard"
        ) from None


def _read_shards(folders: list[Path], trust_model: bool) -> tuple[Plan, list[FragmentStore]]:
    manifests = []
    for folder in folders:
        path = folder / MANIFEST
        if not path.is_file():
            raise InvalidInputError(f"{folder} is not a finished shard folder (no {MANIFEST}); rerun that shard")
        try:
            manifests.append((folder, json.loads(path.read_text())))
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{path} cannot be read ({exc}); rerun that shard") from None
    first_folder, first = manifests[0]
    for folder, manifest in manifests[1:]:
        for key, what in (
            ("robustcnn_version", "robustcnn versions"),
            ("plan_hash", "plans or models"),
            ("of", "shard counts"),
        ):
            if manifest.get(key) != first.get(key):
                raise InvalidInputError(
                    f"{folder} and {first_folder} come from different {what} "
                    f"({manifest.get(key)} vs {first.get(key)}); merge only the shards of one run"
                )
    if first.get("robustcnn_version") != __version__:
        raise InvalidInputError(
            f"the shards were made by robustcnn {first.get('robustcnn_version')}, this is {__version__}; "
            "merge them with the version that made them"
        )
    count = first["of"]
    seen = [m["shard"] for _, m in manifests]
    missing = sorted(set(range(1, count + 1)) - set(seen))
    if missing:
        raise InvalidInputError(
            f"shard(s) {', '.join(f'{i}/{count}' for i in missing)} missing; give every shard folder"
        )
    twice = sorted({i for i in seen if seen.count(i) > 1})
    if twice:
        raise InvalidInputError(f"shard(s) {', '.join(f'{i}/{count}' for i in twice)} given twice")
    stores = []
    for folder, manifest in manifests:
        store = FragmentStore(folder / FRAGMENTS)
        for task in manifest["tasks"]:
            if task["status"] == "done" and not _loads(store, task["key"]):
                where = f"shard {task['shard']}" if task["shard"] is not None else "whole"
                raise InvalidInputError(
                    f"{folder}: fragment of model {task['model']}, check {task['check']}, {where} is missing or "
                    f"damaged ({store.path(task['key'])}); rerun shard {manifest['shard']}/{count}"
                )
        stores.append(store)
    return plan_from_record(first["plan"], "", trust_model), stores


def _loads(store: FragmentStore, key: str) -> bool:
    try:
        store.load(key)
    except CorruptFragmentError:
        return False
    return True


def merge(
    plan: Plan,
    stores: list[FragmentStore],
    out: Path,
    engine: Engine,
    force: bool = False,
    rendered: Mapping[str, Callable[[Any], str]] | None = None,
    **progress: bool,
) -> list[Any]:
    """Assemble the report(s) of a sharded run (``read_shards``) in ``out``: the shards' fragments
    are reused, the summaries and deferred tasks computed here; ``rendered`` as in ``runner.audit_model``."""
    from .runner import run_plan

    plan.out = os.fspath(out)
    return run_plan(plan, resume=True, force=force, engine=engine, sources=stores, rendered=rendered, **progress)

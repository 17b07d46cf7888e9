"""What a worker needs to rebuild an audit's inputs, and the worker-side task runner."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..data import DEFAULT_TRAIN_N, DatasetRef
from ..data.policy import Policy
from ..errors import EnvironmentProblemError
from ..fragments import content_key
from ..models import ModelRef

if TYPE_CHECKING:
    from ..checks import Check, CheckContext, CheckOutput
    from ..plan import Plan
    from ..runner import Prepared, Task

CACHED_JOBS = 2  # prepared (model, data) pairs a worker keeps: memory stays bounded by a few models


class WorkerLostError(EnvironmentProblemError):
    """A worker died (killed, out of memory) on a task more often than the engine retries it."""


class NeedsUpstream(BaseException):
    """A ``--shard`` task read artifacts of an earlier check, which only ``robustcnn merge`` has.

    A BaseException, so that a check's own ``except Exception`` cannot swallow it."""


class DeferredTask(Exception):
    """What an engine returns for a task that raised ``NeedsUpstream``: it is left to the merge."""


def run_guarded(task: Task, check: Check, prepared: Prepared, ctx: CheckContext) -> tuple[CheckOutput, dict[str, Any]]:
    """``runner.run_task``, with a task that needs upstream artifacts turned into ``DeferredTask``."""
    from ..runner import run_task

    try:
        return run_task(task, check, prepared, ctx)
    except NeedsUpstream:
        raise DeferredTask(task.key) from None


@dataclass(frozen=True)
class Job:
    """One model's audit inputs: the model reference and what ``runner.prepare`` takes."""

    model_ref: ModelRef
    data: str
    n: int | None
    seed: int
    device: str
    policy: Policy = field(default_factory=Policy)
    train_n: int | None = DEFAULT_TRAIN_N
    batch_size: int | None = None  # given, else chosen in ``prepare``; results do not depend on it

    @classmethod
    def of(cls, plan: Plan, model_ref: ModelRef) -> Job:
        return cls(model_ref, plan.data, plan.n, plan.seed, plan.device, plan.policy, plan.train_n, plan.batch_size)

    @property
    def key(self) -> str:
        return content_key(
            self.model_ref.fingerprint(),
            self.model_ref.describe(),
            self.data,
            self.n,
            self.seed,
            self.device,
            self.policy,
            self.train_n,
        )

    def prepare(self) -> Prepared:
        from ..runner import prepare

        data = DatasetRef(self.data, self.policy, self.train_n)
        return prepare(self.model_ref, data, self.n, self.seed, self.device, self.batch_size)


class EngineBase:
    """What engines share: a one-process engine runs one model at a time and keeps nothing."""

    parallel = False
    slots: int | None = 1

    @staticmethod
    def job(plan: Plan, model_ref: ModelRef) -> Job:
        return Job.of(plan, model_ref)

    def release(self, job: Job) -> None:
        """The driver is done with ``job``'s model: its workers may drop it."""


def describe_task(job: Job, task: Task) -> str:
    """``model, check, shard s`` for messages naming a task."""
    where = f"shard {task.shard}" if task.shard is not None else "whole"
    return f"model {job.model_ref.display_name()}, check {task.check}, {where} (task {task.key})"


class PreparedCache:
    """The last few prepared jobs of this worker, loaded once each (thread-safe)."""

    def __init__(self, size: int = CACHED_JOBS) -> None:
        self.size = size
        self._items: OrderedDict[str, Prepared] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, job: Job) -> Prepared:
        with self._lock:
            key = job.key
            if key not in self._items:
                self._items[key] = job.prepare()
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
            self._items.move_to_end(key)
            return self._items[key]

    def drop(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)


WORKER_CACHE = PreparedCache()


def run_in_worker(job: Job, check: Check, task: Task, ctx: CheckContext) -> tuple[CheckOutput, dict[str, Any]]:
    """Run one task in a worker process, with the job's inputs loaded once per worker."""
    return run_guarded(task, check, WORKER_CACHE.get(job), ctx)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover  (macOS, Windows)
        return os.cpu_count() or 1

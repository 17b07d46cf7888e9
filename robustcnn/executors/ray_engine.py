"""Ray actors (``pip install robustcnn[ray]``): a pool of actors, one per share of the cluster's
CPUs (or GPUs) that ``num_cpus``/``num_gpus`` reserve, each keeping the models it loaded across
shards; Ray restarts an actor whose process dies and retries its task.

The actors are created with the engine, so that each imports torch, robustcnn and its checks
while the driver prepares its first model, and each loads a model as soon as the driver names
it (``job``), before the model's first task reaches it. A task goes to the next idle actor
(dynamic scheduling, as in ``ray.util.ActorPool``), so actors serve every model of the run
instead of one cold actor per model. Ray is imported only when this engine is asked for.
``address`` joins a running cluster (``ray start --head`` prints it); without it a local Ray
runtime is started with ``workers`` CPUs (or the machine's).
"""

from __future__ import annotations

import os
import socket
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

import torch

from ..errors import EnvironmentProblemError
from .base import EngineBase, Job, PreparedCache, WorkerLostError, available_cores, describe_task, run_guarded

if TYPE_CHECKING:
    from ..checks import Check, CheckContext, CheckOutput
    from ..models import ModelRef
    from ..plan import Plan
    from ..runner import Prepared, Task

PROBE_SECONDS = 10
RESTARTS = 2
POLL_SECONDS = 0.05  # the dispatcher's longest wait before it sees a new task while actors work


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise EnvironmentProblemError(
            "--executor ray needs Ray, which is not installed: pip install robustcnn[ray]"
        ) from None
    return ray


def probe(address: str, seconds: float = PROBE_SECONDS) -> None:
    """Fail fast when nothing answers at a ``host:port`` Ray address (``auto`` and ``ray://`` pass)."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise EnvironmentProblemError(f"--ray-address {address}: give HOST:PORT as printed by `ray start --head`")
    try:
        socket.create_connection((host, int(port)), timeout=seconds).close()
    except OSError as exc:
        raise EnvironmentProblemError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one with `ray start --head` "
            "or drop --ray-address to run a local Ray runtime"
        ) from None


class ModelWorker:
    """The Ray actor: the prepared inputs of the last ``slots`` jobs it was given."""

    def __init__(self, threads: int, slots: int) -> None:
        from .. import runner  # noqa: F401  (imported now, while the driver prepares, not on the first task)
        from ..checks.registry import load_registry

        torch.set_num_threads(threads)
        load_registry()
        self.cache = PreparedCache(size=slots)

    def load(self, job: Job) -> None:
        """Prepare ``job`` ahead of its tasks; a failure is left to the first task, which reports it."""
        try:
            self.cache.get(job)
        except Exception:  # the task that needs the model raises it again, named
            pass

    def drop(self, key: str) -> None:
        self.cache.drop(key)

    def run(self, job: Job, check: Check, task: Task, ctx: CheckContext) -> tuple[CheckOutput, dict[str, Any]]:
        return run_guarded(task, check, self.cache.get(job), ctx)

    def pid(self) -> int:
        return os.getpid()


def pool_size(ray: Any, workers: int | None, num_cpus: float, num_gpus: float) -> int:
    """Actors in the pool: ``workers`` when given, else as many as the cluster's CPUs (and GPUs) hold."""
    if workers:
        return workers
    resources = ray.cluster_resources()
    cpus = resources.get("CPU", 1)
    fits = int(cpus // num_cpus) if num_cpus else int(cpus)
    if num_gpus:
        fits = min(fits, int(resources.get("GPU", 0) // num_gpus))
    return max(1, fits)


class RayEngine(EngineBase):
    parallel = True

    def __init__(self, address: str | None, workers: int | None, num_cpus: float = 1, num_gpus: float = 0) -> None:
        ray = self.ray = import_ray()
        self.started = not ray.is_initialized()
        if self.started:
            if address:
                probe(address)
            try:
                ray.init(
                    address=address or "local",  # "local": a new runtime, even if `ray start` runs one here
                    num_cpus=None if address else (workers or available_cores()),
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
            except ConnectionError as exc:
                raise EnvironmentProblemError(f"cannot join the Ray cluster at {address}: {exc}") from None
        size = pool_size(ray, workers, num_cpus, num_gpus)
        self.slots = size + 1  # as a process pool: one more model than actors, its summary runs in the driver
        options = {"num_cpus": num_cpus, "num_gpus": num_gpus, "max_restarts": RESTARTS, "max_task_retries": RESTARTS}
        actor_class = ray.remote(ModelWorker).options(**options)
        threads = max(1, int(num_cpus))  # a torch thread per CPU an actor reserves
        self.actors = [actor_class.remote(threads, self.slots) for _ in range(size)]
        self._dispatch = _Dispatcher(ray, self.actors)

    def job(self, plan: Plan, model_ref: ModelRef) -> Job:
        """The job, which every actor starts loading now (each runs some of its shards)."""
        job = Job.of(plan, model_ref)
        for actor in self.actors:
            actor.load.remote(job)
        return job

    def release(self, job: Job) -> None:
        """The model is done: every actor drops it."""
        for actor in self.actors:
            actor.drop.remote(job.key)

    def submit(self, job: Job, check: Check, task: Task, ctx: CheckContext, prepared: Prepared) -> _Handle:
        handle = _Handle(self, job, task, (job, check, task, ctx))
        self._dispatch.put(handle)
        return handle

    def worker_pids(self) -> list[int]:
        """The process ids of the actors (for tests that kill one)."""
        return self.ray.get([actor.pid.remote() for actor in self.actors])

    def close(self, cancel: bool = False) -> None:
        """Stop the actors (a task in flight ends with ``WorkerLostError``); a second call does nothing."""
        self._dispatch.close()
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []
        if self.started:
            self.ray.shutdown()
            self.started = False


class _Dispatcher:
    """Hands each queued task to the next idle actor, one task per actor at a time, so an actor
    that finishes early takes the next task instead of waiting behind another actor's queue."""

    def __init__(self, ray: Any, actors: list[Any]) -> None:
        self.ray, self.actors = ray, actors
        self._idle = deque(range(len(actors)))
        self._queue: deque[_Handle] = deque()
        self._running: dict[Any, int] = {}  # ObjectRef -> actor
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, daemon=True, name="robustcnn-ray-dispatch")
        self._thread.start()

    def put(self, handle: _Handle) -> None:
        with self._changed:
            if self._closed:
                raise WorkerLostError("the Ray executor was stopped")
            self._queue.append(handle)
            self._changed.notify()

    def close(self) -> None:
        """Fail the queued tasks and end the dispatcher (before Ray shuts down under its ``ray.wait``)."""
        with self._changed:
            self._closed = True
            for handle in self._queue:
                handle.start(None)
            self._queue.clear()
            self._changed.notify()
        self._thread.join(timeout=10 * POLL_SECONDS)

    def _loop(self) -> None:
        while True:
            with self._changed:
                while not self._closed and not self._running and not (self._queue and self._idle):
                    self._changed.wait()
                if self._closed:
                    return
                while self._queue and self._idle:
                    handle, actor = self._queue.popleft(), self._idle.popleft()
                    try:
                        ref = self.actors[actor].run.remote(*handle.args)
                    except Exception as exc:  # e.g. arguments Ray cannot serialize: the caller gets the error
                        self._idle.appendleft(actor)
                        handle.start(None, exc)
                        continue
                    self._running[ref] = actor
                    handle.start(ref)
                running = list(self._running)
            if running:
                done, _ = self.ray.wait(running, num_returns=1, timeout=POLL_SECONDS)
                with self._changed:
                    for ref in done:
                        self._idle.append(self._running.pop(ref))


class _Handle:
    def __init__(self, engine: RayEngine, job: Job, task: Task, args: tuple) -> None:
        self.engine, self.job, self.task, self.args = engine, job, task, args
        self.ref: Any = None
        self.error: Exception | None = None
        self._started = threading.Event()

    def start(self, ref: Any, error: Exception | None = None) -> None:
        """The task was sent to an actor (``ref``), could not be (``error``), or the engine stopped first."""
        self.ref, self.error = ref, error
        self._started.set()

    def result(self) -> tuple[CheckOutput, dict[str, Any]]:
        self._started.wait()
        if self.error is not None:
            raise self.error
        if self.ref is None:
            raise WorkerLostError(f"the Ray executor was stopped before {describe_task(self.job, self.task)} ran")
        exceptions = self.engine.ray.exceptions
        try:
            return self.engine.ray.get(self.ref)
        except exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            raise (cause if isinstance(cause, BaseException) else exc) from None
        except (exceptions.RayActorError, exceptions.WorkerCrashedError) as exc:
            raise WorkerLostError(
                f"the Ray worker running {describe_task(self.job, self.task)} died after {RESTARTS} restarts; "
                "check memory and rerun with --resume"
            ) from exc

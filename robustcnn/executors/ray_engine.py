"""Ray tasks (``pip install robustcnn[ray]``): a Ray actor per (model, device) keeps the loaded
model and data across shards; Ray restarts an actor whose process dies and retries its task.

Ray is imported only when this engine is asked for. ``address`` joins a running cluster
(``ray start --head`` prints it); without it a local Ray runtime is started with ``workers``
CPUs (or the machine's). ``num_cpus``/``num_gpus`` are what each actor reserves.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

import torch

from ..errors import EnvironmentProblemError
from .base import EngineBase, Job, PreparedCache, WorkerLostError, describe_task, run_guarded

if TYPE_CHECKING:
    from ..checks import Check, CheckContext, CheckOutput
    from ..runner import Prepared, Task

PROBE_SECONDS = 10
RESTARTS = 2


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
    """The Ray actor: one job's prepared inputs, loaded on first use."""

    def __init__(self, threads: int) -> None:
        torch.set_num_threads(threads)
        self.cache = PreparedCache(size=1)

    def run(self, job: Job, check: Check, task: Task, ctx: CheckContext) -> tuple[CheckOutput, dict[str, Any]]:
        return run_guarded(task, check, self.cache.get(job), ctx)

    def pid(self) -> int:
        import os

        return os.getpid()


class RayEngine(EngineBase):
    parallel = True
    slots = None  # every model at once: an actor waits for the CPUs or GPUs it reserves

    def __init__(self, address: str | None, workers: int | None, num_cpus: float = 1, num_gpus: float = 0) -> None:
        ray = self.ray = import_ray()
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        self.started = not ray.is_initialized()
        if self.started:
            if address:
                probe(address)
            try:
                ray.init(
                    address=address,
                    num_cpus=None if address else workers,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
            except ConnectionError as exc:
                raise EnvironmentProblemError(f"cannot join the Ray cluster at {address}: {exc}") from None
        self.actor_class = ray.remote(ModelWorker)
        self._actors: dict[str, Any] = {}

    def actor(self, job: Job) -> Any:
        key = job.key  # holds the device: one actor per (model, device)
        if key not in self._actors:
            self._actors[key] = self.actor_class.options(
                num_cpus=self.num_cpus,
                num_gpus=self.num_gpus,
                max_restarts=RESTARTS,
                max_task_retries=RESTARTS,
            ).remote(max(1, int(self.num_cpus)))  # a thread per CPU it reserves
        return self._actors[key]

    def release(self, job: Job) -> None:
        """The model is done: its actor goes, and what it reserved is free for the next model."""
        actor = self._actors.pop(job.key, None)
        if actor is not None:
            self.ray.kill(actor)

    def submit(self, job: Job, check: Check, task: Task, ctx: CheckContext, prepared: Prepared) -> _Handle:
        return _Handle(self, job, task, self.actor(job).run.remote(job, check, task, ctx))

    def close(self, cancel: bool = False) -> None:
        for actor in self._actors.values():
            self.ray.kill(actor)
        self._actors.clear()
        if self.started:
            self.ray.shutdown()


class _Handle:
    def __init__(self, engine: RayEngine, job: Job, task: Task, ref: Any) -> None:
        self.engine, self.job, self.task, self.ref = engine, job, task, ref

    def result(self) -> tuple[CheckOutput, dict[str, Any]]:
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

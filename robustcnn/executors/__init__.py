"""Engines that run an audit's tasks: in this process, in a process pool, or as Ray tasks.

The driver (``runner``) keeps the dependency order: it submits the shards of a check together,
summarizes the check once they are back, hands its artifacts to the checks after it, and runs
independent models side by side. It writes every fragment itself; an engine only computes
``run_task`` somewhere and returns the result. Workers load a model and its data once per
``Job`` (model fingerprint, data, sample, seed, device) and reuse it across shards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ..errors import UsageError
from .base import Job, WorkerLostError

if TYPE_CHECKING:
    from ..checks import Check, CheckContext, CheckOutput
    from ..models import ModelRef
    from ..plan import Plan
    from ..runner import Prepared, Task

EXECUTORS = ("local", "processes", "ray")


class Handle(Protocol):
    def result(self) -> tuple[CheckOutput, dict[str, Any]]: ...


class Engine(Protocol):
    """Runs tasks; ``parallel`` engines let the driver audit several models at once, at most
    ``slots`` of them (``None``: all)."""

    parallel: bool
    slots: int | None

    def job(self, plan: Plan, model_ref: ModelRef) -> Job:
        """What a worker needs to load ``model_ref`` for ``plan``."""

    def submit(self, job: Job, check: Check, task: Task, ctx: CheckContext, prepared: Prepared) -> Handle: ...

    def release(self, job: Job) -> None:
        """The driver is done with ``job``'s model: its workers may drop it."""

    def close(self, cancel: bool = False) -> None: ...


def make_engine(
    name: str, workers: int | None = None, ray_address: str | None = None, num_cpus: float = 1, num_gpus: float = 0
) -> Engine:
    """The engine called ``name``; ``UsageError`` for an unknown one, ``EnvironmentProblemError``
    when Ray is missing or its address does not answer."""
    if name == "local":
        from .local import LocalEngine

        return LocalEngine()
    if name == "processes":
        from .processes import ProcessEngine

        return ProcessEngine(workers or 2)
    if name == "ray":
        from .ray_engine import RayEngine

        return RayEngine(ray_address, workers, num_cpus, num_gpus)
    raise UsageError(f"unknown executor '{name}'; use one of {', '.join(EXECUTORS)}")


__all__ = ["EXECUTORS", "Engine", "Handle", "Job", "WorkerLostError", "make_engine"]

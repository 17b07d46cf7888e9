"""The in-process engine: each task runs when it is submitted (today's one-process behaviour)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import EngineBase, Job, run_guarded

if TYPE_CHECKING:
    from ..checks import Check, CheckContext, CheckOutput
    from ..runner import Prepared, Task


class Done:
    """A result computed already."""

    def __init__(self, value: tuple[CheckOutput, dict[str, Any]]) -> None:
        self.value = value

    def result(self) -> tuple[CheckOutput, dict[str, Any]]:
        return self.value


class LocalEngine(EngineBase):
    """Runs each task in this process when it is submitted."""

    def submit(self, job: Job, check: Check, task: Task, ctx: CheckContext, prepared: Prepared) -> Done:
        return Done(run_guarded(task, check, prepared, ctx))

    def close(self, cancel: bool = False) -> None:
        return None

"""What a running audit shows and when it stops: a progress bar per check (on a terminal) or one
line per finished task (in logs), both with the time left, and the ``--max-minutes`` budget."""

from __future__ import annotations

import sys
import time

from .estimate import Eta, format_seconds


class BudgetSpent(Exception):
    """Raised at a task boundary once the run's ``--max-minutes`` have passed."""


class Budget:
    """A wall-clock budget for a run, from its start; ``None`` minutes is no budget."""

    def __init__(self, minutes: float | None) -> None:
        self.minutes = minutes
        self.started = time.monotonic()

    def spent(self) -> bool:
        return self.minutes is not None and time.monotonic() - self.started >= self.minutes * 60


class RunProgress:
    """Progress of one model's audit: ``task_done`` after every task (computed or reused).

    A terminal gets a tqdm bar per check; otherwise, with ``lines``, each task prints
    ``robustcnn: [3/13] adversarial: task done, 41 s elapsed, about 2 min 10 s left``. The time left
    comes from the plan's estimate, scaled by the pace of the checks finished so far (``Eta``).
    Once ``budget`` is spent (and this run computed a task), the run stops at the next task boundary:
    ``task_done`` raises ``BudgetSpent`` inside a check, ``budget_spent`` tells the caller between checks.
    """

    def __init__(self, name: str, total: int, eta: Eta, bar: bool, lines: bool, budget: Budget | None = None) -> None:
        self.name, self.total, self.eta = name, total, eta
        self.show_bar, self.lines, self.budget = bar, lines, budget
        self.done, self.check_tasks, self.check_done = 0, 0, 0
        self.computed = 0  # tasks this run computed (reused fragments do not count)
        self.started = time.perf_counter()
        self.bar = None

    def start_check(self, check: str, tasks: int) -> None:
        from tqdm import tqdm

        self.close()
        self.eta.start(check)
        self.check_tasks, self.check_done = tasks, 0
        if self.show_bar:
            self.bar = tqdm(total=tasks, desc=f"{self.name} {check}", unit="task", leave=False)
            self.bar.set_postfix_str(self.eta.text())

    def finish_check(self, check: str, seconds: float) -> None:
        self.eta.finish(check, seconds)
        self.close()

    def computed_task(self) -> None:
        self.computed += 1

    def task_done(self, k: int = 1) -> None:
        self.done += k
        self.check_done += k
        self.eta.fraction = self.check_done / max(self.check_tasks, 1)
        if self.bar is not None:
            self.bar.update(k)
            self.bar.set_postfix_str(self.eta.text())
        if self.lines:
            elapsed = format_seconds(time.perf_counter() - self.started)
            print(
                f"robustcnn: [{self.done}/{self.total}] {self.eta.check}: task done, {elapsed} elapsed, {self.eta.text()}",
                file=sys.stderr,
                flush=True,
            )
        if self.budget_spent() and self.check_done < self.check_tasks:
            raise BudgetSpent

    def budget_spent(self) -> bool:
        """The budget is spent and this run has computed a task (so every run makes progress)."""
        return self.budget is not None and self.computed > 0 and self.budget.spent()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

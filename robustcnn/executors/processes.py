"""A process pool on one machine (``concurrent.futures``): shards and models run side by side.

Workers are spawned (not forked: a forked copy of a process that already ran torch's thread
pools can hang) and share the machine's cores: each uses cores / workers torch threads, so the
pool does not oversubscribe them. A worker keeps the models of the jobs in flight loaded
(``slots``: the driver audits at most that many models at once). A worker that dies mid-task
breaks the pool; the task is then resubmitted to a fresh pool, up to ``retries`` times, after
which ``WorkerLostError`` names the task.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

import torch

from .base import WORKER_CACHE, EngineBase, Job, WorkerLostError, available_cores, describe_task, run_in_worker

if TYPE_CHECKING:
    from ..checks import Check, CheckContext, CheckOutput
    from ..runner import Prepared, Task

log = logging.getLogger("robustcnn")
RETRIES = 2


def _init_worker(threads: int, slots: int, driver: int) -> None:
    torch.set_num_threads(threads)
    WORKER_CACHE.size = slots
    threading.Thread(target=_exit_with, args=(driver,), daemon=True, name="robustcnn-driver-watch").start()


def _exit_with(driver: int) -> None:
    """End this worker when the driver is gone (killed: nobody else would; the pool's queues stay open)."""
    while os.getppid() == driver:
        time.sleep(1)
    os._exit(1)
    logging.basicConfig(level=logging.WARNING, format="robustcnn worker: %(message)s")


class ProcessEngine(EngineBase):
    parallel = True

    def __init__(self, workers: int, retries: int = RETRIES) -> None:
        self.workers = workers
        self.retries = retries
        self.threads = max(1, available_cores() // workers)
        self.slots = workers + 1  # one more model than workers: a model's summary runs in the driver meanwhile
        self._lock = threading.Lock()
        self._generation = 0
        self._closed = False
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self.threads, self.slots, os.getpid()),
        )

    def _submit(self, args: tuple) -> tuple[Future, int]:
        with self._lock:
            return self._pool.submit(run_in_worker, *args), self._generation

    def _renew(self, generation: int) -> None:
        """Replace a broken pool once, however many of its tasks notice it."""
        with self._lock:
            if self._closed:
                raise WorkerLostError("the process pool was stopped")
            if generation == self._generation:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
                self._generation += 1

    def submit(self, job: Job, check: Check, task: Task, ctx: CheckContext, prepared: Prepared) -> _Handle:
        return _Handle(self, job, (job, check, task, ctx))

    def worker_pids(self) -> list[int]:
        """The process ids of the current pool's workers (for tests that kill one)."""
        with self._lock:
            return [p.pid for p in (getattr(self._pool, "_processes", None) or {}).values() if p.pid]

    def close(self, cancel: bool = False) -> None:
        with self._lock:
            self._closed = True
            processes = list((getattr(self._pool, "_processes", None) or {}).values())
            self._pool.shutdown(wait=not cancel, cancel_futures=cancel)
            if cancel:
                for process in processes:  # stop work in progress now (Ctrl-C), not after the current task
                    if process.is_alive():
                        process.terminate()
                for process in processes:
                    process.join(timeout=5)


class _Handle:
    def __init__(self, engine: ProcessEngine, job: Job, args: tuple) -> None:
        self.engine, self.job, self.args = engine, job, args
        self.attempts = 0
        self.future, self.generation = engine._submit(args)

    def result(self) -> tuple[CheckOutput, dict[str, Any]]:
        while True:
            try:
                return self.future.result()
            except BrokenProcessPool as exc:
                self.attempts += 1
                what = describe_task(self.job, self.args[2])
                if self.attempts > self.engine.retries:
                    raise WorkerLostError(
                        f"a worker process died {self.attempts} times running {what}; "
                        "check memory (lower --batch-size or --workers) and rerun with --resume"
                    ) from exc
                log.warning("a worker process died running %s; retrying it in a fresh pool", what)
                self.engine._renew(self.generation)
                self.future, self.generation = self.engine._submit(self.args)

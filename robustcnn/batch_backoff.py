"""Find a batch size the device can hold: run the work, and on out-of-memory halve the batch and run
it again. Results do not depend on the batch size (random streams are seeded per sample), so a
retried task gives the same numbers; the batch size that worked is recorded in meta.json."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch's out-of-memory errors: CUDA's, MPS's and XPU's (RuntimeErrors naming it) and
    the CPU allocator's ("can't allocate memory")."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(s in str(exc) for s in ("out of memory", "can't allocate memory"))


def release_cached_memory(device: str) -> None:
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_with_backoff(work: Callable[[int], T], batch_size: int, device: str) -> tuple[T, int]:
    """``work(batch_size)``, halving ``batch_size`` after each out-of-memory error; returns the
    result and the batch size that fitted. Out of memory at batch size 1 is raised as it came
    (the command line reports it as an environment problem, exit 4)."""
    size = batch_size
    while True:
        try:
            return work(size), size
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            release_cached_memory(device)
            if size == 1:
                raise
            size //= 2

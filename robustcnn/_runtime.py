"""Process settings made when robustcnn is imported, before torch starts: how OpenMP threads
wait, and how much freed memory glibc keeps. An explicit environment setting wins over both."""

from __future__ import annotations

import ctypes
import os
import sys

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's upper limit on 64-bit
TRIM_THRESHOLD = 256 << 20


def wait_passively() -> None:
    """OpenMP threads that spin while waiting made small-batch torch calls up to 30x slower when
    another process held a core (measured on 2 cores); passive waiting costs next to nothing.
    Effective only before torch is imported."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def keep_freed_memory() -> bool:
    """Have glibc serve allocations up to 32 MiB from its heap and keep up to 256 MiB of freed
    heap, instead of mapping each large tensor afresh and returning it on free: batches of the
    same shapes are then allocated without page faults (the demo audit took 2.8 M minor faults
    and 11 s of system time without this, 0.3 M and 5 s with it). Skipped when any ``MALLOC_*_``
    variable is set or the C library is not glibc; returns whether the settings took."""
    if not sys.platform.startswith("linux") or any(k.startswith("MALLOC_") and k.endswith("_") for k in os.environ):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def release_free_memory() -> None:
    """Return the free memory glibc keeps (``keep_freed_memory``) to the system, between phases of a
    run (after preparing, after each task): the next phase's peak then starts from what is live, not
    from the last phase's high-water mark. A no-op where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return

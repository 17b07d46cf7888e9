"""Process settings made at import: passive OpenMP waiting and glibc keeping freed memory."""

import os
import platform
import subprocess
import sys

import pytest

# Allocates 64 MiB as 16 tensors, frees them, allocates them again and prints the minor page
# faults of the second round: about 16k (64 MiB / 4 KiB) when the freed memory went back to the OS.
REUSE = """
import resource, sys
import robustcnn, torch
def round_trip():
    kept = [torch.ones(1 << 20) for _ in range(16)]
    del kept
round_trip()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
round_trip()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not (k.startswith("MALLOC_") and k.endswith("_"))}


@pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc",
    reason="the setting is glibc's mallopt; other C libraries keep their own behaviour",
)
def test_freed_tensors_are_reused_without_page_faults():
    faults = int(
        subprocess.run(
            [sys.executable, "-c", REUSE], env=_clean_env(), capture_output=True, text=True, check=True
        ).stdout
    )
    assert faults < 1600  # a tenth of what returning the memory to the OS costs


def test_explicit_settings_win():
    code = "import robustcnn, robustcnn._runtime as r, os; print(os.environ['OMP_WAIT_POLICY'], r.keep_freed_memory())"
    env = {**_clean_env(), "OMP_WAIT_POLICY": "ACTIVE", "MALLOC_TRIM_THRESHOLD_": "131072"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["ACTIVE", "False"]

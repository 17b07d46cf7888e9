"""Out-of-memory back-off: the batch is halved until the work fits, other errors pass through."""

from __future__ import annotations

import pytest
import torch

from robustcnn.batch_backoff import is_out_of_memory, run_with_backoff


def work_that_fits(limit: int, calls: list[int]):
    def work(batch_size: int) -> str:
        calls.append(batch_size)
        if batch_size > limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return f"done at {batch_size}"

    return work


def test_halves_until_the_batch_fits():
    calls: list[int] = []
    result, size = run_with_backoff(work_that_fits(40, calls), 256, "cpu")
    assert (result, size) == ("done at 32", 32)
    assert calls == [256, 128, 64, 32]


def test_a_batch_that_fits_runs_once():
    calls: list[int] = []
    assert run_with_backoff(work_that_fits(512, calls), 256, "cpu") == ("done at 256", 256)
    assert calls == [256]


def test_out_of_memory_at_one_image_is_raised_as_it_came():
    calls: list[int] = []
    with pytest.raises(torch.OutOfMemoryError):
        run_with_backoff(work_that_fits(0, calls), 4, "cpu")
    assert calls == [4, 2, 1]


def test_other_errors_are_not_retried():
    calls: list[int] = []

    def broken(batch_size: int) -> None:
        calls.append(batch_size)
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        run_with_backoff(broken, 64, "cpu")
    assert calls == [64]


@pytest.mark.parametrize(
    "exc, expected",
    [
        (torch.OutOfMemoryError("x"), True),
        (RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"), True),
        (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"), True),
        (RuntimeError("shape mismatch"), False),
        (MemoryError(), False),
    ],
)
def test_recognises_out_of_memory(exc, expected):
    assert is_out_of_memory(exc) is expected


def test_an_audit_that_runs_out_of_memory_finishes_at_a_smaller_batch_with_the_same_numbers(tmp_path, monkeypatch):
    import robustcnn
    from robustcnn.models import AuditedModel

    options = {"data": "digits", "n": 40, "checks": ["clean", "spatial"], "seed": 0}
    reference = robustcnn.audit(out=tmp_path / "small", batch_size=32, **options)
    forward = AuditedModel.forward

    def limited(self, x):
        if x.shape[0] > 32:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return forward(self, x)

    monkeypatch.setattr(AuditedModel, "forward", limited)
    report = robustcnn.audit(out=tmp_path / "big", batch_size=256, **options)
    assert (tmp_path / "big" / "results.csv").read_bytes() == (tmp_path / "small" / "results.csv").read_bytes()
    warnings = report.meta["checks"]["clean"]["warnings"]
    assert any("at batch size 256; this task ran at batch size 32" in w for w in warnings)
    assert reference.meta["checks"]["clean"]["warnings"] == []

"""The batch size an audit uses when the user gives none: as many images per model call as fit a
memory budget for what one call holds, capped at ``MAX_BATCH``.

Attacks take gradients to the input, so the largest thing a model call holds is the activations
autograd saves for its backward pass. They are measured, not guessed: a forward pass on two images
under ``torch.autograd.graph.saved_tensors_hooks`` sums the storage of every saved tensor that is
not a parameter or buffer. That works for eager modules, TorchScript and torch.export programs
alike. Results do not depend on the batch size (random streams are seeded per sample), so the
choice changes speed and memory, never a number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from . import MIN_BATCH, AuditedModel

MAX_BATCH = 256  # the cap; small models reach it (the demo CNN saves about 50 kB per image)
CPU_BUDGET = 512 << 20  # bytes one call may hold for its backward pass on CPU
GPU_SHARE = 0.5  # of the device memory free when the run starts


@dataclass(frozen=True)
class BatchChoice:
    """The batch size and why: ``auto`` when robustcnn chose it, with the bytes one image's
    activations take (saved for backward) and the budget they were fitted into."""

    size: int
    auto: bool
    activation_bytes: int | None = None
    budget_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "auto": self.auto,
            "activation_bytes_per_image": self.activation_bytes,
            "budget_bytes": self.budget_bytes,
        }

    def describe(self) -> str:
        if not self.auto:
            return f"batch size {self.size} (given)"
        per_image = (self.activation_bytes or 0) / 2**20
        return f"batch size {self.size} (auto: {per_image:.1f} MiB of activations per image, {self.budget_bytes >> 20} MiB budget)"  # type: ignore[operator]


def saved_activation_bytes(model: AuditedModel, sample: torch.Tensor) -> int:
    """Bytes of the tensors autograd saves for backward in one forward pass of ``sample`` (parameters
    and buffers left out), per image."""
    owned = {t.untyped_storage().data_ptr() for t in (*model.net.parameters(), *model.net.buffers())}
    storages: dict[int, int] = {}

    def pack(saved: torch.Tensor) -> torch.Tensor:
        storage = saved.untyped_storage()
        if storage.data_ptr() not in owned:
            storages[storage.data_ptr()] = max(storages.get(storage.data_ptr(), 0), storage.nbytes())
        return saved

    x = sample.to(model.device).detach().requires_grad_(True)
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda saved: saved):
        model.net((x - model.mean) / model.std)  # the bare network: the pass counter is not touched
    return -(-sum(storages.values()) // max(len(sample), 1))


def device_budget(device: torch.device) -> int:
    """What one call may hold: ``CPU_BUDGET`` on CPU, ``GPU_SHARE`` of the free memory on a GPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * GPU_SHARE)
    return CPU_BUDGET


def choose_batch_size(model: AuditedModel, sample: torch.Tensor, given: int | None) -> BatchChoice:
    """``given`` when the user set one, else the most images (``MIN_BATCH`` to ``MAX_BATCH``) whose
    saved activations fit the device's budget."""
    if given is not None:
        return BatchChoice(given, auto=False)
    per_image = saved_activation_bytes(model, sample[:2])
    budget = device_budget(model.device)
    fits = budget // max(per_image, 1)
    return BatchChoice(int(min(MAX_BATCH, max(MIN_BATCH, fits))), True, per_image, budget)

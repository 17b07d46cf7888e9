"""What an audit holds of a dataset: the decoded evaluation sample and a lazily decoded training split.

Memory: the evaluation sample is n x C x H x W float32 at the model's input size (50 RGB images
at 224x224 are 30 MB); the training split, only once a check reads it, ``train_n`` images of the
same size. Neither grows with the number of files in the dataset.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError
from .base import Split
from .index import DataIndex, Decoded, LazySplit, decode_sample, probe_sample
from .policy import Policy, Target

log = logging.getLogger("robustcnn")
LARGE_SAMPLE_BYTES = 2_000_000_000  # warn before decoding an evaluation sample larger than this


@dataclass
class SampleProbe:
    """The drawn evaluation positions and what their headers say (channels, stored size)."""

    positions: np.ndarray
    channels: int
    sizes: list[tuple[int, int]]

    def input_size(self, policy: Policy) -> tuple[int, int]:
        """The most common size of the sample after ``policy``: the input size when the model names none."""
        return Counter(policy.output_size(size) for size in self.sizes).most_common(1)[0][0]


def probe_eval(index: DataIndex, n: int | None, seed: int) -> SampleProbe:
    """Draw the evaluation sample (class-stratified, seeded) and read only its items' headers."""
    probes = probe_sample(index.test, n, seed, index.skipped)
    if not probes:
        first = index.skipped[0] if index.skipped else None
        hint = f"; {len(index.skipped)} skipped, e.g. {first['file']}: {first['reason']}" if first else ""
        raise InvalidInputError(f"dataset '{index.name}' holds no readable images{hint}")
    channels = 3 if any(c == 3 for c, _ in probes.values()) else 1
    return SampleProbe(
        np.fromiter(probes, dtype=np.int64, count=len(probes)), channels, [s for _, s in probes.values()]
    )


@dataclass
class SampledData:
    """The evaluation sample at ``target``, the training split (decoded on first use) and their notes."""

    index: DataIndex
    target: Target
    eval: Split
    train: LazySplit | None
    positions: np.ndarray
    train_n: int | None
    notes: list[str]
    _fingerprint: str | None = None

    def fingerprint(self) -> str:
        """sha256 of the index, the target and policy, ``train_n`` and the decoded evaluation images."""
        if self._fingerprint is None:
            h = hashlib.sha256(self.index.identity().encode())
            h.update(repr((self.target, self.train_n)).encode())
            h.update(self.positions.tobytes())
            h.update(self.eval.x.numpy().tobytes())
            if self.eval.masks is not None:
                h.update(self.eval.masks.numpy().tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint


def sample_data(
    index: DataIndex,
    probe: SampleProbe,
    n: int | None,
    seed: int,
    target: Target,
    train_n: int | None,
    decoded: Decoded | None = None,
) -> SampledData:
    """Decode the evaluation sample at ``target`` (replacing unreadable items by a fresh draw) and
    set up the training split, capped at ``train_n`` images and decoded only when a check reads it.
    ``decoded``: items of the sample already read (see ``decode_sample``)."""
    notes = list(index.notes)
    planned = len(probe.positions) * target.channels * target.size[0] * target.size[1] * 4
    if planned > LARGE_SAMPLE_BYTES:
        log.warning(
            "the evaluation sample of %d images takes %.1f GB in memory at %dx%d; --n samples fewer",
            len(probe.positions),
            planned / 1e9,
            *target.size,
        )
    split, positions = decode_sample(
        index.test, n, seed, target, index.skipped, notes, first=probe.positions, decoded=decoded
    )
    if index.skipped:
        first = index.skipped[0]
        log.warning(
            "skipped %d unusable files (listed in meta.json, data.skipped), e.g. %s: %s",
            len(index.skipped),
            first["file"],
            first["reason"],
        )
    train = LazySplit(index.train, train_n, seed, target, index.skipped, notes) if index.train is not None else None
    return SampledData(index, target, split, train, positions, train_n, notes)

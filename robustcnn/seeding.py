"""Per-sample random streams, so a random draw depends on the run seed and the image, never on
which other images share its batch or shard.

Every image gets a 64-bit key from (run seed, salt, sample id). ``SampleStreams`` turns keys
into random numbers with a counter-based generator: draw number ``c`` of element ``j`` of
sample ``k`` is the SplitMix64 output (Steele, Lea & Flood 2014, "Fast splittable
pseudorandom number generators") of ``mix(k ^ mix(c)) + (j + 1) * golden``. It is vectorised
over the batch in plain int64 tensor arithmetic, so it runs on any device and gives the same
bits on each. Every draw of a stream advances the counter once for all its samples, so loops
that drop finished samples (``subset``) keep each remaining sample on its own sequence.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import torch

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1, _M2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_CHUNK = 1 << 22  # elements hashed at a time, which bounds the int64 temporaries to a few tens of MB


def _signed(v: int) -> int:
    v &= _MASK
    return v - (1 << 64) if v >= 1 << 63 else v


def _shr(z: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's ``>>`` is arithmetic)."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def mix(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser on int64 tensors (wrapping arithmetic)."""
    z = (z ^ _shr(z, 30)) * _signed(_M1)
    z = (z ^ _shr(z, 27)) * _signed(_M2)
    return z ^ _shr(z, 31)


def _mix_int(v: int) -> int:
    v &= _MASK
    v = ((v ^ (v >> 30)) * _M1) & _MASK
    v = ((v ^ (v >> 27)) * _M2) & _MASK
    return v ^ (v >> 31)


def salt_key(*salt: object) -> int:
    """A signed 64-bit key for a tuple of JSON-like parts (check name, corruption, attack, ...)."""
    return _signed(int.from_bytes(hashlib.blake2b(repr(salt).encode(), digest_size=8).digest(), "little"))


def sample_keys(seed: int, ids: Sequence[str], *salt: object) -> torch.Tensor:
    """(N,) int64 keys, one per sample id, for the run ``seed`` and ``salt``."""
    prefix = repr((int(seed), *salt)).encode()
    keys = [
        int.from_bytes(hashlib.blake2b(prefix + b"\x00" + str(i).encode(), digest_size=8).digest(), "little")
        for i in ids
    ]
    return torch.tensor([_signed(k) for k in keys], dtype=torch.int64)


class SampleStreams:
    """One random stream per sample, drawn in batches: row ``i`` of every draw comes from sample ``i``'s stream."""

    def __init__(self, keys: torch.Tensor, counter: int = 0) -> None:
        self.keys = keys.to(torch.int64)
        self.counter = counter

    @classmethod
    def for_ids(cls, seed: int, ids: Sequence[str], *salt: object, device: torch.device | str = "cpu") -> SampleStreams:
        return cls(sample_keys(seed, ids, *salt).to(device))

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def device(self) -> torch.device:
        return self.keys.device

    def fork(self, *salt: object) -> SampleStreams:
        """Independent streams for a sub-task (an attack, a level), starting from draw 0."""
        return SampleStreams(mix(self.keys ^ salt_key(*salt)))

    def subset(self, index: torch.Tensor | slice) -> SampleStreams:
        """The streams of some samples, at the same position in their sequences."""
        return SampleStreams(self.keys[index], self.counter)

    def to(self, device: torch.device | str) -> SampleStreams:
        return SampleStreams(self.keys.to(device), self.counter)

    def _bases(self) -> torch.Tensor:
        step = _signed(_mix_int(self.counter * _GOLDEN + 1))
        self.counter += 1
        return mix(self.keys ^ step)

    def bits(self, shape: Sequence[int]) -> torch.Tensor:
        """(N, *shape) random int64 words; one draw."""
        count = math.prod(shape)
        bases = self._bases()
        out = torch.empty(len(self), count, dtype=torch.int64, device=self.device)
        rows = max(1, _CHUNK // max(count, 1))
        steps = (torch.arange(count, dtype=torch.int64, device=self.device) + 1) * _signed(_GOLDEN)
        for i in range(0, len(self), rows):
            out[i : i + rows] = mix(bases[i : i + rows, None] + steps[None, :])
        return out.view(len(self), *shape)

    def uniform(
        self, shape: Sequence[int], low: float = 0.0, high: float = 1.0, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """(N, *shape) uniform in [low, high): 24 random bits for float32 and below, 53 for float64."""
        bits = self.bits(shape)
        if dtype == torch.float64:
            u = _shr(bits, 11).to(torch.float64) * 2.0**-53
        else:
            u = _shr(bits, 40).to(torch.float32) * 2.0**-24
        return u.to(dtype).mul_(high - low).add_(low)

    def normal(
        self, shape: Sequence[int], loc: float = 0.0, scale: float = 1.0, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """(N, *shape) Gaussian by the Box-Muller transform of two uniforms per value: 24-bit ones
        in float32 (tails cut at 5.8 sigma) for float32 and below, 32-bit ones in float64 otherwise."""
        bits = self.bits(shape)
        if dtype == torch.float64:
            u1 = (_shr(bits, 32).to(torch.float64) + 1.0) * 2.0**-32  # (0, 1]: the log is finite
            u2 = (bits & 0xFFFFFFFF).to(torch.float64) * 2.0**-32
        else:
            u1 = (_shr(bits, 40).to(torch.float32) + 1.0) * 2.0**-24
            u2 = (bits & 0xFFFFFF).to(torch.float32) * 2.0**-24
        z = u1.log_().mul_(-2.0).sqrt_().mul_(u2.mul_(2.0 * math.pi).cos_())
        return z.to(dtype).mul_(scale).add_(loc)

    def integers(self, low: int, high: int, shape: Sequence[int]) -> torch.Tensor:
        """(N, *shape) int64 in [low, high)."""
        u = _shr(self.bits(shape), 11).to(torch.float64) * 2.0**-53
        return (u * (high - low)).floor_().to(torch.int64).add_(low).clamp_(max=high - 1)

    def generators(self) -> list[torch.Generator]:
        """One seeded torch generator per sample (for samplers torch has no counter-based form of,
        e.g. Poisson); one draw."""
        seeds = (_shr(self._bases(), 1)).tolist()
        return [torch.Generator(device=self.device).manual_seed(int(s)) for s in seeds]

    def batch_seed(self) -> int:
        """One seed for the whole batch, from its samples' keys: for libraries that only draw from
        torch's global generator, whose draws then depend on the batch's composition (not its order
        in the run)."""
        return _mix_int(salt_key(self.keys.tolist(), self.counter)) & ((1 << 62) - 1)

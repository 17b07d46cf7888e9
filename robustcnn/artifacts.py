"""Typed keys for what checks hand to one another, and the container that carries them.

A check declares the keys it ``provides``, the ones it ``needs`` (it cannot run without them)
and the ones it ``uses`` (read when their provider ran, replaced by something of its own when
not); ``checks.order`` derives the run order from these declarations. Values pass in an
``Artifacts`` container: ``put`` refuses a value of the wrong type, ``get`` returns it typed.
Within one check, the same container carries what ``measure`` leaves for ``summarize``.

The keys below are the ones built-in checks hand on; a key only one check reads (a shard's
costs for its own summary) is defined beside that check. docs/architecture.md tells the whole
run of an audit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import torch

T = TypeVar("T")

_KEYS: dict[str, ArtifactKey[Any]] = {}  # every key by name, so a saved fragment reads back typed


@dataclass(frozen=True)
class ArtifactKey(Generic[T]):
    """The name of an artifact (``"<check>/<what>"``) and the type of its value."""

    name: str
    type: type[T]
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        known = _KEYS.setdefault(self.name, self)
        if known.type is not self.type:
            raise TypeError(f"artifact key '{self.name}' is declared twice, as {known.type} and {self.type}")

    @staticmethod
    def named(name: str) -> ArtifactKey[Any]:
        """The key declared under ``name`` (``KeyError`` when none is)."""
        return _KEYS[name]


class Artifacts:
    """Artifacts by typed key. A value is checked against its key's type when it is put."""

    def __init__(self, items: Mapping[ArtifactKey[Any], Any] | None = None) -> None:
        self._items: dict[ArtifactKey[Any], Any] = {}
        for key, value in (items or {}).items():
            self.put(key, value)

    def put(self, key: ArtifactKey[T], value: T) -> None:
        if not isinstance(key, ArtifactKey):
            raise TypeError(f"artifacts are keyed by ArtifactKey, not {type(key).__name__} {key!r}")
        if not isinstance(value, key.type):
            raise TypeError(f"artifact '{key.name}' must be a {key.type.__name__}, not a {type(value).__name__}")
        self._items[key] = value

    def get(self, key: ArtifactKey[T]) -> T | None:
        return self._items.get(key)

    def __getitem__(self, key: ArtifactKey[T]) -> T:
        return self._items[key]

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[ArtifactKey[Any]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Artifacts({', '.join(k.name for k in self._items)})"

    def items(self) -> Iterator[tuple[ArtifactKey[Any], Any]]:
        return iter(self._items.items())

    def update(self, other: Artifacts) -> None:
        for key, value in other.items():
            self.put(key, value)

    def only(self, keys: Iterable[ArtifactKey[Any]]) -> Artifacts:
        """A new container with the artifacts of ``keys`` that are present."""
        return Artifacts({k: self._items[k] for k in keys if k in self._items})

    def by_name(self) -> dict[str, Any]:
        """Plain ``{name: value}``, for saving."""
        return {k.name: v for k, v in self._items.items()}

    @classmethod
    def from_names(cls, named: Mapping[str, Any]) -> Artifacts:
        """The container ``by_name`` was made from (``KeyError`` for a name no key declares)."""
        return cls({ArtifactKey.named(name): value for name, value in named.items()})


ADVERSARIAL_EXAMPLES = ArtifactKey(
    "adversarial/examples", torch.Tensor, "adversarial examples at the headline epsilon, of correctly classified images"
)
FOOLING_GRADIENT_IMAGES = ArtifactKey("fooling-gradient/images", torch.Tensor, "fooling images by gradient ascent")
FOOLING_EVOLUTION_IMAGES = ArtifactKey("fooling-evolution/images", torch.Tensor, "fooling images by evolution")
CORRUPTED_IMAGES = ArtifactKey("corruptions/severity5", torch.Tensor, "evaluation images under a severity-5 corruption")

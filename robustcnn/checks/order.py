"""The order checks run and are listed in, derived from the artifacts they need and provide.

Every check comes after the providers of the artifacts it ``needs`` or ``uses`` (a topological
order, Kahn 1962, "Topological sorting of large networks"). Where the declarations leave a
choice, the order given is kept: the registry hands over built-in checks in ``CATALOGUE`` order
(the order of reports, comparisons and ``robustcnn list``) and plugins after them by name.
A cycle, two providers of one artifact, or a needed artifact without its provider is refused
with one line (``InvalidInputError``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Protocol, TypeVar

from ..artifacts import ArtifactKey
from ..errors import InvalidInputError

# Built-in checks in the order reports list them, where the artifacts leave a choice.
CATALOGUE = (
    "clean",
    "adversarial",
    "fooling-gradient",
    "fooling-evolution",
    "noise",
    "patch",
    "occlusion",
    "corruptions",
    "spatial",
    "dataset-bias",
    "label-issues",
    "groups",
    "confidence",
)


class Declares(Protocol):
    """What ordering reads of a check (its class or an instance)."""

    name: ClassVar[str]
    needs: ClassVar[tuple[ArtifactKey[Any], ...]]
    uses: ClassVar[tuple[ArtifactKey[Any], ...]]
    provides: ClassVar[tuple[ArtifactKey[Any], ...]]


C = TypeVar("C", bound=Declares)


def catalogue_rank(name: str) -> tuple[int, str]:
    """Where a check goes among those the artifacts do not order: built-ins as listed, then plugins by name."""
    return (CATALOGUE.index(name), "") if name in CATALOGUE else (len(CATALOGUE), name)


def registry_order(checks: Iterable[C]) -> list[C]:
    """All registered checks in the order they run and are listed in (a needed artifact without a
    provider is refused only when the check is selected to run)."""
    return ordered(sorted(checks, key=lambda c: catalogue_rank(c.name)), require=False)


def ordered(checks: Sequence[C], known: Iterable[Declares] = (), require: bool = True) -> list[C]:
    """``checks`` with every provider before the checks that need or use its artifacts, and otherwise
    in the order given. With ``require``, every artifact a check needs must have its provider among
    ``checks``; ``known`` (e.g. the whole registry) only names that provider in the error."""
    providers: dict[ArtifactKey[Any], C] = {}
    for check in checks:
        _check_declarations(check)
        for key in check.provides:
            if key in providers:
                raise InvalidInputError(
                    f"checks '{providers[key].name}' and '{check.name}' both provide artifact '{key.name}'; "
                    "only one check may provide it"
                )
            providers[key] = check
    for check in checks if require else ():
        for key in check.needs:
            if key not in providers:
                raise InvalidInputError(_missing(check, key, known))
    after = {
        check.name: [providers[k] for k in (*check.needs, *check.uses) if k in providers and providers[k] is not check]
        for check in checks
    }
    done: list[C] = []
    pending = list(checks)
    while pending:
        ready = next((c for c in pending if all(p in done for p in after[c.name])), None)
        if ready is None:
            raise InvalidInputError(
                f"checks wait on one another's artifacts in a cycle: {_cycle(pending, after, done)}"
            )
        done.append(ready)
        pending.remove(ready)
    return done


def _check_declarations(check: Declares) -> None:
    for field in ("needs", "uses", "provides"):
        declared = getattr(check, field)
        if not isinstance(declared, tuple) or not all(isinstance(k, ArtifactKey) for k in declared):
            raise InvalidInputError(f"check '{check.name}': {field} must be a tuple of ArtifactKey, not {declared!r}")


def _missing(check: Declares, key: ArtifactKey[Any], known: Iterable[Declares]) -> str:
    provider = next((k.name for k in known if key in k.provides), None)
    if provider is None:
        return f"check '{check.name}' needs artifact '{key.name}', which no installed check provides"
    return (
        f"check '{check.name}' needs artifact '{key.name}' from check '{provider}', which is not among the checks run"
    )


def _cycle(pending: list[C], after: dict[str, list[C]], done: list[C]) -> str:
    """One cycle among ``pending`` as ``a -> b -> a`` (each check waits on the next)."""
    path: list[C] = []
    check = pending[0]
    while check not in path:
        path.append(check)
        check = next(p for p in after[check.name] if p not in done)
    loop = [*path[path.index(check) :], check]
    return " -> ".join(c.name for c in loop)

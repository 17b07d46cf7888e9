"""What ``--checks`` accepts besides check names: ``all``, family names and budgeted profiles.

A profile is a named bundle of checks, per-check option overrides and an evaluation sample
size ``n``; ``quick``, ``standard`` and ``thorough`` run every check, with budgets (attack
steps, images, generations) that grow from one to the next. docs/profiles.md lists them.
Options from a plan file and ``--set`` override a profile's budgets, ``--n`` its ``n``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidInputError


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    n: int | None
    options: dict[str, dict[str, Any]] = field(default_factory=dict)


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        "quick",
        "every check at small budgets, 100 images: a first look in minutes",
        100,
        {
            "adversarial": {"norms": ["linf"], "attacks": ["fgsm", "apgd-ce"], "apgd_steps": 20, "unbounded_images": 0},
            "fooling-gradient": {"steps": 50, "prototype_steps": 50},
            "fooling-evolution": {"population": 50, "generations": 20},
            "noise": {"n": 200},
            "patch": {
                "vulnerable_targets": 1,
                "train_images": 200,
                "epochs": 2,
                "areas": [0.05, 0.15],
                "shapes": ["square"],
                "pilot_classes": 3,
                "pilot_images": 64,
                "pilot_epochs": 1,
                "examples": 4,
            },
            "spatial": {"max_shift": 4, "n_angles": 11, "n_translations": 3, "random_trials": 3},
            "corruptions": {"severities": [3, 5]},
            "occlusion": {"max_positions": 7},
            "dataset-bias": {"probe_max_samples": 1000},
            "label-issues": {"max_samples": 1000, "bootstrap": 50},
            "groups": {"bootstrap": 50},
            "confidence": {
                "noise_n": 200,
                "fooling_n": 20,
                "fooling_steps": 30,
                "adversarial_n": 50,
                "corruption_n": 100,
            },
        },
    ),
    "standard": Profile(
        "standard",
        "every check at moderate budgets, 200 images: the usual pre-release audit",
        200,
        {
            "adversarial": {
                "norms": ["linf", "l2"],
                "attacks": ["fmn", "apgd-ce", "apgd-t"],
                "apgd_steps": 50,
                "apgd_targets": 3,
                "unbounded_images": 16,
            },
            "fooling-gradient": {"steps": 150, "prototype_steps": 100},
            "fooling-evolution": {"population": 100, "generations": 50},
            "noise": {"n": 500},
            "patch": {
                "train_images": 500,
                "epochs": 4,
                "areas": [0.05, 0.10, 0.25],
                "pilot_classes": 5,
                "pilot_images": 128,
                "pilot_epochs": 1,
            },
            "spatial": {"n_angles": 21, "random_trials": 5},
            "corruptions": {"severities": [1, 3, 5]},
            "label-issues": {"max_samples": 4000, "bootstrap": 100},
            "groups": {"bootstrap": 100},
            "confidence": {"noise_n": 300, "fooling_n": 30, "fooling_steps": 60, "corruption_n": 200},
        },
    ),
    "thorough": Profile("thorough", "every check with its full default budgets, 500 images", 500, {}),
}


def family_slug(family: str) -> str:
    """A family's name as ``--checks`` takes it: ``"natural shifts"`` -> ``"natural-shifts"``."""
    return family.replace(" ", "-")


def families() -> dict[str, list[str]]:
    """Check names by family slug, in run order."""
    from .checks import load_registry

    registry = load_registry()
    out: dict[str, list[str]] = {}
    for name, cls in registry.items():
        out.setdefault(family_slug(cls.family), []).append(name)
    return out


@dataclass
class Selection:
    """What a ``--checks`` value resolves to. ``optional`` checks came from ``all``, a family or a
    profile rather than by name: the runner skips them, with a note, when the data cannot feed them
    (``groups`` without group attributes, checks that need a training split)."""

    checks: list[str]
    optional: list[str]
    options: dict[str, dict[str, Any]]
    n: int | None
    profile: str | None


def resolve_checks(text: str) -> Selection:
    """Resolve a comma-separated mix of check names, family names, ``all`` and at most one profile."""
    from .checks import load_registry

    registry = load_registry()
    groups = families()
    checks: list[str] = []
    named: set[str] = set()
    profile: Profile | None = None
    tokens = [t.strip() for t in text.split(",") if t.strip()]
    for token in tokens:
        if token in registry:
            if token in named:
                raise InvalidInputError(f"check '{token}' is listed twice in --checks")
            expanded = [token]
            named.add(token)
        elif token in PROFILES:
            if profile is not None:
                raise InvalidInputError(f"--checks names two profiles ({profile.name}, {token}); choose one")
            profile = PROFILES[token]
            expanded = [name for names in groups.values() for name in names]
        elif token == "all":
            expanded = [name for names in groups.values() for name in names]
        elif token in groups:
            expanded = groups[token]
        else:
            raise InvalidInputError(
                f"unknown check '{token}' in --checks; give check names ({', '.join(sorted(registry))}), "
                f"families ({', '.join(groups)}), all, or a profile ({', '.join(PROFILES)})"
            )
        checks += [name for name in expanded if name not in checks]
    if not checks:
        raise InvalidInputError("--checks selects no checks")
    options = {k: dict(v) for k, v in profile.options.items() if k in checks} if profile else {}
    optional = [name for name in checks if name not in named]
    return Selection(checks, optional, options, profile.n if profile else None, profile.name if profile else None)

"""The check registry: built-in checks (every module under ``robustcnn.checks``) and plugin checks
(the ``robustcnn.checks`` entry-point group), by name."""

from __future__ import annotations

from ..errors import InvalidInputError
from .base import Check

REGISTRY: dict[str, type[Check]] = {}


def register(cls: type[Check]) -> type[Check]:
    """Class decorator: make a check available by its ``name`` to plans, the CLI and gates."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    REGISTRY[cls.name] = cls
    return cls


CHECK_PACKAGES = ["robustcnn.checks"]
PLUGIN_GROUP = "robustcnn.checks"
PLUGINS: dict[str, str] = {}  # name -> "module:Class" of each registered plugin check
PLUGIN_ERRORS: dict[str, str] = {}  # name -> why the plugin was skipped


def load_registry() -> dict[str, type[Check]]:
    """Import every module of the check packages (each registers its checks), then the checks other
    packages declare in the ``robustcnn.checks`` entry-point group, and return the registry."""
    import importlib
    import pkgutil

    for package_name in CHECK_PACKAGES:
        package = importlib.import_module(package_name)
        for module in pkgutil.walk_packages(package.__path__, package_name + "."):
            importlib.import_module(module.name)
    _load_plugins()
    return REGISTRY


def _load_plugins() -> None:
    """Register third-party checks (entry point ``name = "package.module:CheckClass"``).

    Plugins are guests: one that fails to import, is not a ``Check``, or reuses a built-in
    name is skipped with a warning (kept in ``PLUGIN_ERRORS``), and never stops an audit.
    """
    from importlib.metadata import entry_points

    for entry in entry_points(group=PLUGIN_GROUP):
        if entry.name in PLUGIN_ERRORS or entry.name in PLUGINS:
            continue
        if entry.name in REGISTRY:
            _skip_plugin(entry.name, f"{entry.value} reuses the name of a built-in check")
            continue
        try:
            cls = entry.load()
        except Exception as exc:  # a broken plugin must not break the tool
            _skip_plugin(entry.name, f"{entry.value} failed to import: {type(exc).__name__}: {exc}")
            continue
        if not (isinstance(cls, type) and issubclass(cls, Check)):
            _skip_plugin(entry.name, f"{entry.value} is not a robustcnn.checks.Check subclass")
        elif cls.name != entry.name:
            _skip_plugin(entry.name, f"{entry.value} is named '{cls.name}', not '{entry.name}'")
        else:
            REGISTRY[cls.name] = cls
            PLUGINS[cls.name] = entry.value


def _skip_plugin(name: str, reason: str) -> None:
    import logging

    PLUGIN_ERRORS[name] = reason
    logging.getLogger("robustcnn").warning("plugin check '%s' skipped: %s", name, reason)


def get_check(name: str) -> type[Check]:
    registry = load_registry()
    if name not in registry:
        raise InvalidInputError(f"unknown check '{name}'; available: {', '.join(sorted(registry))}")
    return registry[name]

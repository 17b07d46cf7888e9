"""Checks: the contract (``base``), the registry (``registry``) and one module per check, named after
the check, in a folder named after its family (``robustcnn.checks.<family>.<check>``)."""

from .base import (
    AuditData,
    Check,
    CheckContext,
    CheckOutput,
    Headline,
    NoConfig,
    SampleCheck,
    batched,
)
from .registry import (
    CHECK_PACKAGES,
    PLUGIN_ERRORS,
    PLUGIN_GROUP,
    PLUGINS,
    REGISTRY,
    get_check,
    load_registry,
    register,
)

__all__ = [
    "CHECK_PACKAGES",
    "PLUGINS",
    "PLUGIN_ERRORS",
    "PLUGIN_GROUP",
    "REGISTRY",
    "AuditData",
    "Check",
    "CheckContext",
    "CheckOutput",
    "Headline",
    "NoConfig",
    "SampleCheck",
    "batched",
    "get_check",
    "load_registry",
    "register",
]

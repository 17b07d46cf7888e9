"""Errors that carry the CLI exit code of DESIGN.md, so every layer can fail cleanly."""
from __future__ import annotations


class RobustCNNError(Exception):
    """Base class: a problem with a one-line message and an exit code."""

    exit_code = 3


class UsageError(RobustCNNError):
    """The command line or Python call was used wrongly (exit 2)."""

    exit_code = 2


class InvalidInputError(RobustCNNError):
    """A bad model, dataset, plan or policy (exit 4)."""

    exit_code = 4


class NothingEvaluatedError(RobustCNNError):
    """The run finished without evaluating anything (exit 5)."""

    exit_code = 5


class GateFailedError(RobustCNNError):
    """At least one gate with severity 'fail' did not hold (exit 1)."""

    exit_code = 1

"""The ``confidence`` check: scores, OOD sets, detection metrics, calibration and the OD-test."""

from .check import ConfidenceCheck, ConfidenceConfig

__all__ = ["ConfidenceCheck", "ConfidenceConfig"]

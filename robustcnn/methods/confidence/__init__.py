"""Confidence: scores, OOD sets, detection metrics, calibration and the OD-test."""

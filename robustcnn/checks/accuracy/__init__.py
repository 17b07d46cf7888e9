"""Checks of the family "accuracy"."""

"""Checks of the family "natural shifts"."""

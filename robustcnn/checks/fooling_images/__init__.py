"""Checks of the family "fooling images"."""

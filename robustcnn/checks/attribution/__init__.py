"""Checks of the family "attribution"."""

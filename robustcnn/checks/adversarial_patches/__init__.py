"""Checks of the family "adversarial patches"."""

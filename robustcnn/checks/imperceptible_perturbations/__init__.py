"""Checks of the family "imperceptible perturbations"."""

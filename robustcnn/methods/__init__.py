"""Algorithms the checks call (attacks, shifts, attribution, confidence metrics); they never import checks."""

"""Adversarial patches (Brown et al. 2017): training by expectation over placements, and controls."""

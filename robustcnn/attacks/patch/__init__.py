"""Adversarial patches (Brown et al. 2017): training by expectation over placements, controls, the ``patch`` check."""

from .check import PatchCheck

__all__ = ["PatchCheck"]

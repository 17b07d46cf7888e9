"""Calibration and selective classification on clean inputs.

- Expected calibration error with equal-width bins (Naeini et al. 2015; Guo et al. 2017).
- Risk-coverage curve: abstain on the least confident inputs and measure the error rate
  of the rest (Geifman & El-Yaniv 2017); its area AURC and the excess over the best
  possible ranking, E-AURC (Geifman et al. 2019).
- Misclassification detection: AUROC of the score separating right from wrong
  predictions (Hendrycks & Gimpel 2017, "success detection").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score


@dataclass(frozen=True)
class Reliability:
    """Per-bin counts, mean confidence and accuracy, and the ECE they give."""

    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    ece: float


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> Reliability:
    """Bin ``confidence`` (probabilities in [0, 1]) into ``bins`` equal-width bins ``(lo, hi]``."""
    conf = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(correct, dtype=np.float64)
    if len(conf) == 0:
        raise ValueError("no predictions to calibrate")
    index = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=conf, minlength=bins) / counts
        accuracy = np.bincount(index, weights=hit, minlength=bins) / counts
    gaps = np.where(counts > 0, np.abs(accuracy - mean_conf), 0.0)
    ece = float(np.sum(counts * gaps) / len(conf))
    return Reliability(np.linspace(0.0, 1.0, bins + 1), counts, mean_conf, accuracy, ece)


@dataclass(frozen=True)
class RiskCoverage:
    """Selective risk at each coverage k/n when keeping the k most confident inputs."""

    coverage: np.ndarray
    risk: np.ndarray
    aurc: float
    optimal_aurc: float

    @property
    def excess_aurc(self) -> float:
        return self.aurc - self.optimal_aurc

    def accuracy_at(self, coverage: float) -> tuple[float, int]:
        """(selective accuracy, inputs kept) when keeping a share ``coverage`` of inputs."""
        k = max(1, math.ceil(coverage * len(self.coverage) - 1e-9))
        return 1.0 - float(self.risk[k - 1]), k


def risk_coverage(score: np.ndarray, correct: np.ndarray) -> RiskCoverage:
    """Risk-coverage curve of ranking by ``score`` (ties broken by input order)."""
    errors = 1.0 - np.asarray(correct, dtype=np.float64)
    if len(errors) == 0:
        raise ValueError("no predictions to rank")
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")
    risk = _selective_risk(errors[order])
    optimal = _selective_risk(np.sort(errors))
    n = len(errors)
    return RiskCoverage(np.arange(1, n + 1) / n, risk, float(risk.mean()), float(optimal.mean()))


def _selective_risk(sorted_errors: np.ndarray) -> np.ndarray:
    return np.cumsum(sorted_errors) / np.arange(1, len(sorted_errors) + 1)


def misclassification_auroc(score: np.ndarray, correct: np.ndarray) -> float:
    """AUROC of ``score`` ranking correct above wrong predictions; nan if either is absent."""
    hit = np.asarray(correct, dtype=np.int64)
    if np.unique(hit).size < 2:
        return math.nan
    return float(roc_auc_score(hit, np.asarray(score, dtype=np.float64)))

"""Detection metrics for "accept if score >= threshold" (Hendrycks & Gimpel 2017).

Clean (in-distribution) inputs are the positive class. AUROC and AUPR come from
scikit-learn; ``aupr_in`` treats clean inputs as positives, ``aupr_out`` the bad inputs
(with the score negated), as in Hendrycks & Gimpel. The threshold that keeps a share
``tpr`` of clean inputs is the operating point a deployment would choose without seeing
bad inputs; ``accepted`` counts the bad inputs that pass it (its share is FPR@TPR).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve


@dataclass(frozen=True)
class Detection:
    """Separation of clean from bad inputs by one score."""

    auroc: float
    aupr_in: float
    aupr_out: float
    fpr_at_tpr: float
    threshold: float
    clean_kept: float
    accepted: int
    n_ood: int
    n_clean: int


def threshold_at_tpr(clean: np.ndarray, tpr: float = 0.95) -> float:
    """The largest threshold ``t`` with ``mean(clean >= t) >= tpr``."""
    if len(clean) == 0:
        raise ValueError("no clean scores to set a threshold on")
    ordered = np.sort(np.asarray(clean, dtype=np.float64))[::-1]
    return float(ordered[max(1, math.ceil(tpr * len(ordered) - 1e-9)) - 1])


def fpr_at_tpr(clean: np.ndarray, ood: np.ndarray, tpr: float = 0.95) -> float:
    """False-positive rate (bad inputs accepted) at the first ROC point reaching ``tpr``."""
    labels, scores = _stack(clean, ood)
    fpr, tprs, _ = roc_curve(labels, scores, drop_intermediate=False)
    return float(fpr[np.searchsorted(tprs, tpr - 1e-12, side="left")])


def detection(clean: np.ndarray, ood: np.ndarray, tpr: float = 0.95) -> Detection:
    """AUROC, AUPR-in/out, FPR at ``tpr`` and the bad inputs accepted at the ``tpr`` threshold."""
    clean = np.asarray(clean, dtype=np.float64)
    ood = np.asarray(ood, dtype=np.float64)
    if len(ood) == 0:
        raise ValueError("no out-of-distribution scores")
    labels, scores = _stack(clean, ood)
    threshold = threshold_at_tpr(clean, tpr)
    return Detection(
        auroc=float(roc_auc_score(labels, scores)),
        aupr_in=float(average_precision_score(labels, scores)),
        aupr_out=float(average_precision_score(1 - labels, -scores)),
        fpr_at_tpr=fpr_at_tpr(clean, ood, tpr),
        threshold=threshold,
        clean_kept=float(np.mean(clean >= threshold)),
        accepted=int(np.sum(ood >= threshold)),
        n_ood=len(ood),
        n_clean=len(clean),
    )


def _stack(clean: np.ndarray, ood: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.concatenate([np.ones(len(clean), dtype=np.int64), np.zeros(len(ood), dtype=np.int64)])
    return labels, np.concatenate([clean, ood]).astype(np.float64)

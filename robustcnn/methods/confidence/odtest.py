"""The OD-test protocol (Shafaei, Schmidt & Little 2018): does a threshold tuned on one kind
of bad input still reject another kind?

Clean inputs and every OOD set are split in two halves with a seeded permutation. The
threshold is fitted on (clean fit half, OOD set A fit half) to maximise balanced accuracy,
then tested on (clean test half, OOD set B test half); the detection accuracy is the mean
of the clean share accepted and the bad share rejected (the balanced test set of the paper).
Fitting and testing on the same set (A = B) gives the in-set baseline on held-out halves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_curve


@dataclass(frozen=True)
class ODResult:
    fit_on: str
    test_on: str
    threshold: float
    accuracy: float
    n_test: int


def fit_threshold(clean: np.ndarray, ood: np.ndarray) -> float:
    """The threshold (accept if score >= t) with the best balanced accuracy on these halves."""
    labels = np.concatenate([np.ones(len(clean)), np.zeros(len(ood))])
    fpr, tpr, thresholds = roc_curve(labels, np.concatenate([clean, ood]), drop_intermediate=False)
    best = int(np.argmax(tpr - fpr))
    return float(thresholds[best])


def balanced_accuracy(clean: np.ndarray, ood: np.ndarray, threshold: float) -> float:
    return 0.5 * (float(np.mean(clean >= threshold)) + float(np.mean(ood < threshold)))


def halves(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of ``range(n)`` into a fit half and a test half (the test half gets the odd one)."""
    perm = rng.permutation(n)
    return perm[: n // 2], perm[n // 2 :]


def od_test(clean: np.ndarray, sets: dict[str, np.ndarray], seed: int = 0) -> list[ODResult]:
    """Every (fit set, test set) pair of ``sets``; sets with fewer than 2 inputs are left out."""
    rng = np.random.default_rng(seed)
    clean_fit, clean_test = halves(len(clean), rng)
    split = {name: halves(len(s), rng) for name, s in sets.items() if len(s) >= 2}
    results = []
    for fit_name, (fit_idx, _) in split.items():
        threshold = fit_threshold(clean[clean_fit], sets[fit_name][fit_idx])
        for test_name, (_, test_idx) in split.items():
            accuracy = balanced_accuracy(clean[clean_test], sets[test_name][test_idx], threshold)
            results.append(ODResult(fit_name, test_name, threshold, accuracy, len(clean_test) + len(test_idx)))
    return results

"""What the data alone teaches (the ``dataset-bias`` check's algorithms): attribute x class
association (Cramer's V, normalised mutual information, chi-square or permutation p-value), cheap
image statistics for a cross-validated shortcut probe, and nearest thumbnails for near-duplicates.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.stats import chi2_contingency
from scipy.stats.contingency import association
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import normalized_mutual_info_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

BORDER = 3  # width in pixels of the border ring used by the border statistics


THUMB = 16  # side of the grayscale thumbnails compared for near-duplicates


def association_stats(
    groups: pd.Series, y: np.ndarray, permutations: int, gen: np.random.Generator
) -> dict[str, float]:
    """Cramer's V, normalised mutual information and p-value of an attribute against the label."""
    table = pd.crosstab(groups.to_numpy(), y)
    counts = table.to_numpy()
    if counts.shape[0] < 2 or counts.shape[1] < 2:
        return {"cramers_v": math.nan, "nmi": math.nan, "p_value": math.nan}
    v = float(association(counts, method="cramer"))
    nmi = float(normalized_mutual_info_score(y, groups.to_numpy()))
    if permutations:
        codes = pd.factorize(groups)[0]
        k = int(y.max()) + 1
        null = [_cramers_v(codes, gen.permutation(y), counts.shape[0], k) for _ in range(permutations)]
        p = (1 + sum(s >= v - 1e-12 for s in null)) / (1 + permutations)
    else:
        p = float(chi2_contingency(counts, correction=False)[1])
    return {"cramers_v": v, "nmi": nmi, "p_value": p}


def _cramers_v(codes: np.ndarray, y: np.ndarray, r: int, k: int) -> float:
    table = np.zeros((r, k), dtype=np.int64)
    np.add.at(table, (codes, y), 1)
    table = table[:, table.sum(axis=0) > 0]
    return float(association(table, method="cramer"))


def probe_features(x: torch.Tensor, masks: torch.Tensor | None) -> dict[str, np.ndarray]:
    """Cheap image statistics per image, by family.

    ``global-stats``: per-channel mean and standard deviation, brightness, and the mean and
    standard deviation of the border ring per channel. ``background`` (with object masks):
    per-channel mean and standard deviation of the pixels outside the object. ``tiny-image``:
    the image area-averaged to 4x4 per channel.
    """
    n, c, h, w = x.shape
    flat = x.reshape(n, c, -1)
    ring = torch.ones(h, w, dtype=torch.bool)
    ring[BORDER : h - BORDER, BORDER : w - BORDER] = False
    border = x[:, :, ring]
    feats = {
        "global-stats": torch.cat(
            [
                flat.mean(2),
                flat.std(2),
                x.mean(dim=(1, 2, 3))[:, None],
                border.mean(2),
                border.std(2),
            ],
            dim=1,
        ),
        "tiny-image": F.adaptive_avg_pool2d(x, 4).reshape(n, -1),
    }
    if masks is not None:
        outside = (masks < 0.5).expand(-1, c, -1, -1).reshape(n, c, -1).float()
        count = outside.sum(2).clamp_min(1)
        mean = (flat * outside).sum(2) / count
        var = (((flat - mean[:, :, None]) ** 2) * outside).sum(2) / count
        feats["background"] = torch.cat([mean, var.sqrt()], dim=1)
    return {k: v.double().numpy() for k, v in feats.items()}


def shortcut_probe(features: np.ndarray, y: np.ndarray, folds: int, seed: int) -> tuple[int, int] | None:
    """Correct out-of-fold predictions of a standardised logistic regression, and n; None if too few samples."""
    counts = np.bincount(y)
    folds = min(folds, int(counts[counts > 0].min()))
    if folds < 2 or len(np.unique(y)) < 2:
        return None
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    with threadpool_limits(limits=1):  # small problems: threaded BLAS only adds contention
        pred = cross_val_predict(model, features, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    return int((pred == y).sum()), len(y)


def thumbnails(x: torch.Tensor) -> torch.Tensor:
    """Grayscale THUMB x THUMB thumbnails, flattened and standardised per image (zero mean, unit RMS),
    so that brightness, contrast and tint do not hide a duplicate."""
    t = F.adaptive_avg_pool2d(x.mean(dim=1, keepdim=True), THUMB).reshape(len(x), -1).double()
    t = t - t.mean(dim=1, keepdim=True)
    return t / t.pow(2).mean(dim=1, keepdim=True).sqrt().clamp_min(1e-6)


def nearest(queries: torch.Tensor, pool: torch.Tensor, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """RMS distance to, and index of, the nearest ``pool`` thumbnail of each query."""
    dists, index = [], []
    for i in range(0, len(queries), chunk):
        d = torch.cdist(queries[i : i + chunk], pool) / math.sqrt(pool.shape[1])
        best = d.min(dim=1)
        dists.append(best.values)
        index.append(best.indices)
    return torch.cat(dists).numpy(), torch.cat(index).numpy()

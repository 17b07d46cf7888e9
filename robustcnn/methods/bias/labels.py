"""Confident learning (Northcutt, Jiang & Chuang 2021; the ``label-issues`` check's algorithms):
per-class thresholds give the confident joint of given and likely true labels, calibrated to the
label counts it estimates the joint distribution Q; pruning by noise rate names the likely
mislabelled images. Out-of-sample probabilities come from a cross-validated logistic regression on
the model's penultimate features. Written from the paper; no code from cleanlab.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch import nn

from ...models import AuditedModel

MAX_FEATURES = 256  # wider features are reduced to this many principal components before the regression


REGULARIZATION = (
    0.05  # inverse L2 strength of the regression on standardised features (smooth, well-ranked probabilities)
)


@dataclass
class ConfidentLearning:
    """The result of confident learning on probabilities ``P`` (n, K) and given labels ``s``."""

    thresholds: np.ndarray  # per-class mean self-confidence t_j
    joint_counts: np.ndarray  # confident joint C[given, likely true]
    joint: np.ndarray  # calibrated joint distribution Q[given, true], sums to 1
    issues: np.ndarray  # bool (n,): likely mislabelled

    @property
    def noise_rate(self) -> float:
        return float(1.0 - np.trace(self.joint))


def confident_joint(P: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thresholds t_j = mean P[x, j] over x labelled j; each x counts in C[s_x, j*] where j* is the
    most probable class among those with P[x, j] >= t_j (x is not counted when there is none)."""
    k = P.shape[1]
    thresholds = np.array([P[s == j, j].mean() if (s == j).any() else np.inf for j in range(k)])
    above = P >= thresholds[None, :] - 1e-12
    guess = np.where(above, P, -np.inf).argmax(axis=1)
    counted = above.any(axis=1)
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (s[counted], guess[counted]), 1)
    return thresholds, counts, np.where(counted, guess, -1)


def calibrate(counts: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Q: each row of C rescaled to the number of images with that given label, then normalised to sum 1."""
    k = counts.shape[0]
    given = np.bincount(s, minlength=k).astype(float)
    rows = counts.sum(axis=1, keepdims=True).astype(float)
    scaled = np.where(rows > 0, counts / np.where(rows > 0, rows, 1) * given[:, None], 0.0)
    # A label whose images were never confidently counted keeps its mass on the diagonal.
    scaled[np.diag_indices(k)] += np.where(rows[:, 0] == 0, given, 0.0)
    return scaled / scaled.sum()


def prune_by_noise_rate(P: np.ndarray, s: np.ndarray, joint: np.ndarray) -> np.ndarray:
    """For every off-diagonal (i, j), flag the round(n * Q[i, j]) images labelled i with the largest
    margin P[x, j] - P[x, i]; at most all but one image of a class are flagged."""
    n, k = P.shape
    issues = np.zeros(n, dtype=bool)
    quota = np.rint(joint * n).astype(int)
    for i in range(k):
        members = np.flatnonzero(s == i)
        if len(members) < 2:
            continue
        budget = len(members) - 1
        for j in np.argsort(-quota[i]):
            take = min(int(quota[i, j]), budget) if j != i else 0
            if take <= 0:
                continue
            margin = P[members, j] - P[members, i]
            issues[members[np.argsort(-margin, kind="stable")[:take]]] = True
            budget -= take
    return issues


def find_label_issues(P: np.ndarray, s: np.ndarray, method: str = "prune_by_noise_rate") -> ConfidentLearning:
    thresholds, counts, guess = confident_joint(P, s)
    joint = calibrate(counts, s)
    off_diagonal = (guess >= 0) & (guess != s)
    if method == "confident_joint":
        issues = off_diagonal
    else:
        issues = prune_by_noise_rate(P, s, joint)
        if method == "both":
            issues &= off_diagonal
    return ConfidentLearning(thresholds, counts, joint, issues)


def penultimate_features(model: AuditedModel, x: torch.Tensor, batch_size: int) -> np.ndarray | None:
    """Inputs of the network's final linear layer (the one producing the class scores), or None
    when the network has none. An eager ``nn.Linear`` is read with a forward hook; in TorchScript
    and ``torch.export`` modules, where hooks do not run, the last 2-D weight with one row per class
    is swapped for an identity for the duration of one pass, so the network returns that layer's inputs."""
    linears = [m for m in model.net.modules() if isinstance(m, nn.Linear)]
    if linears:
        if linears[-1].out_features != model.num_classes:
            return None
        return _hooked_features(model, linears[-1], x, batch_size)
    return _identity_head_features(model, x, batch_size)


def _hooked_features(model: AuditedModel, layer: nn.Module, x: torch.Tensor, batch_size: int) -> np.ndarray | None:
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(
        lambda _m, inputs, _o: captured.append(inputs[0].detach().flatten(1).float().cpu())
    )
    parts = []
    try:
        for start in range(0, len(x), batch_size):
            chunk = x[start : start + batch_size]
            captured.clear()
            model.logits(chunk, batch_size)
            if len(captured) != 1 or len(captured[0]) < len(chunk):
                return None
            parts.append(captured[0][: len(chunk)])  # the wrapper may pad a small batch (models.MIN_BATCH)
    finally:
        handle.remove()
    return torch.cat(parts).double().numpy() if parts else None


def _identity_head_features(model: AuditedModel, x: torch.Tensor, batch_size: int) -> np.ndarray | None:
    heads = [(name, p) for name, p in model.net.named_parameters() if name.endswith("weight") and p.dim() == 2]
    if not heads or heads[-1][1].shape[0] != model.num_classes:
        return None
    prefix = heads[-1][0].rpartition(".")[0]
    owner = model.net
    for part in prefix.split(".") if prefix else []:  # get_submodule is not supported on ScriptModules
        owner = getattr(owner, part)
    weight = owner.weight
    bias = getattr(owner, "bias", None)
    width = weight.shape[1]
    try:
        owner.weight = nn.Parameter(torch.eye(width, dtype=weight.dtype, device=weight.device), requires_grad=False)
        if isinstance(bias, torch.Tensor):
            owner.bias = nn.Parameter(torch.zeros(width, dtype=bias.dtype, device=bias.device), requires_grad=False)
        features = model.logits(x, batch_size)
    except RuntimeError:  # a graph that fixed the head's shape: no features, the caller falls back to logits
        return None
    finally:
        owner.weight = weight
        if isinstance(bias, torch.Tensor):
            owner.bias = bias
    if features.dim() != 2 or features.shape != (len(x), width) or model.outputs_probabilities:
        return None
    return features.double().numpy()


def cross_validated_probabilities(features: np.ndarray, s: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Out-of-fold probabilities of a standardised multinomial logistic regression (PCA first when wide)."""
    steps = [StandardScaler()]
    # a training fold holds at least n - n / folds - classes images (stratified folds round per class)
    smallest_fold = len(features) - len(features) // folds - len(np.unique(s)) - 1
    components = min(MAX_FEATURES, features.shape[1], max(smallest_fold, 1))
    if features.shape[1] > components:
        steps.append(PCA(components, random_state=seed))
    model = make_pipeline(*steps, LogisticRegression(C=REGULARIZATION, max_iter=1000))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    with threadpool_limits(limits=1):  # small problems: threaded BLAS only adds contention
        return cross_val_predict(model, features, s, cv=cv, method="predict_proba")

"""``label-issues``: likely mislabelled images by confident learning (Northcutt, Jiang & Chuang 2021).

Out-of-sample class probabilities come from a cross-validated logistic regression on the
model's penultimate features (or its logits), or from the model itself on data it did not
train on. Per-class thresholds (the mean self-confidence of each given label) yield the
confident joint of given and likely true labels; calibrated to the label counts it
estimates the joint distribution Q, hence the noise rate (1 - trace Q) and, pruning by
noise rate, which images are mislabelled. Written from the paper; no code from cleanlab.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch import nn

from ...data import Split, stratified_sample
from ...errors import InvalidInputError
from ...estimate import CostInputs, Passes
from ...models import AuditedModel
from ...options import option
from ...results.plots import image_grid
from ...results.schema import rate, value
from .. import AuditData, Check, CheckContext, CheckOutput, Headline, register
from .groups import select_attributes

SOURCES = ("cv-features", "cv-logits", "model")
METHODS = ("prune_by_noise_rate", "confident_joint", "both")
MAX_FEATURES = 256  # wider features are reduced to this many principal components before the regression
REGULARIZATION = (
    0.05  # inverse L2 strength of the regression on standardised features (smooth, well-ranked probabilities)
)


@dataclass
class LabelIssuesConfig:
    """Options of ``[checks.label-issues]``."""

    split: str = option("auto", "split whose labels are checked", choices=("auto", "train", "eval"))
    probabilities: str = option("cv-features", "source of the out-of-sample probabilities", choices=SOURCES)
    folds: int = option(5, "cross-validation folds", range=">= 2", unit="folds")
    max_samples: int = option(0, "0 = every image of the split", range=">= 0", unit="images")
    method: str = option("prune_by_noise_rate", "how issues are ranked and flagged", choices=METHODS)
    bootstrap: int = option(200, "resamples for the noise-rate interval (0 = none)", range=">= 0", unit="resamples")
    attributes: list[str] = option([], "attributes for the per-group rates; [] = all")


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


@register
class LabelIssuesCheck(Check):
    name = "label-issues"
    family = "audits"
    title = "Label issues"
    description = (
        "Finds images whose given label is probably wrong by confident learning: out-of-sample class "
        "probabilities (a cross-validated classifier on the model's features) are compared with per-class "
        "confidence thresholds, which estimates how often each label stands for another class. The estimated "
        "noise rate says how much of the split is mislabelled; the ranked list in samples.parquet is where to "
        "start relabelling."
    )
    reference = "Northcutt, Jiang & Chuang 2021, Confident Learning: Estimating Uncertainty in Dataset Labels (JAIR)."
    version = "1"
    order = 78
    reads_train = True
    Config = LabelIssuesConfig

    def estimate_passes(self, inputs: CostInputs) -> Passes:
        """One forward pass over the audited split (features or probabilities); the cross-validation is extra."""
        use_train = self.config.split == "train" or (self.config.split == "auto" and inputs.n_train > 0)
        size = inputs.n_train if use_train else inputs.n
        m = min(size, self.config.max_samples or size)
        return Passes(m, note="cross-validation is extra", batch=min(m, inputs.batch_size))

    def preflight(self, model: AuditedModel, data: AuditData) -> None:
        split_name, split = self._split(data)
        self._check_labels(split.y.numpy(), split_name, data.classes)
        select_attributes(split.attrs, self.config.attributes, 20, 4, lambda _message: None, split_name)

    def run(self, model: AuditedModel, data: AuditData, ctx: CheckContext) -> CheckOutput:
        cfg: LabelIssuesConfig = self.config
        out = CheckOutput()
        split_name, split = self._split(data)
        if cfg.max_samples and cfg.max_samples < len(split):
            split = split.subset(stratified_sample(split.y, cfg.max_samples, ctx.seed))
        s_full = split.y.numpy()
        self._check_labels(s_full, split_name, data.classes)
        present = np.unique(s_full)
        counts = np.bincount(s_full, minlength=data.num_classes)
        P_present, source = self._probabilities(model, split, present, split_name, ctx, out)
        code = np.full(data.num_classes, -1)
        code[present] = np.arange(len(present))
        s = code[s_full]
        result = find_label_issues(P_present, s, cfg.method)
        n = len(s)
        names = [data.classes[c] for c in present]
        suggested = present[P_present.argmax(axis=1)]
        out.rows.append(
            rate("out_of_sample_accuracy", int((suggested == s_full).sum()), n, split=split_name, variant=source)
        )
        ci = self._bootstrap(P_present, s, ctx)
        out.rows.append(value("estimated_noise_rate", result.noise_rate, n, ci, split=split_name, variant=source))
        out.rows.append(rate("label_issue_rate", int(result.issues.sum()), n, split=split_name, variant=source))
        for i, cls in enumerate(names):
            members = s == i
            out.rows.append(
                rate(
                    "class_label_issue_rate",
                    int(result.issues[members].sum()),
                    int(members.sum()),
                    **{"class": cls},
                    split=split_name,
                )
            )
            row = result.joint[i]
            out.rows.append(
                value(
                    "class_noise_rate",
                    1 - row[i] / row.sum() if row.sum() > 0 else math.nan,
                    int(members.sum()),
                    **{"class": cls},
                    split=split_name,
                )
            )
            for j, target in enumerate(names):
                if j != i and result.joint[i, j] > 0:
                    out.rows.append(
                        value(
                            "noise_joint",
                            float(result.joint[i, j]),
                            n,
                            **{"class": cls},
                            target=target,
                            split=split_name,
                        )
                    )
        missing = [data.classes[c] for c in range(data.num_classes) if counts[c] == 0]
        if missing:
            out.warnings.append(
                f"classes {', '.join(missing)} have no images in the {split_name} split and were left out"
            )
        accuracy = float((suggested == s_full).mean())
        if accuracy < 0.5:
            out.warnings.append(
                f"out-of-sample accuracy is only {accuracy:.0%}: the probabilities are weak, so the issue list and noise "
                'rate are unreliable (try probabilities = "cv-logits" or a better model)'
            )
        out.rows += self._group_rows(split, result.issues, split_name, out)
        out.samples = self._ranked(split, split_name, result, P_present, s, present, data.classes)
        if len(out.samples):
            top = out.samples.head(20)
            position = {sid: i for i, sid in enumerate(split.ids)}
            images = split.x[[position[sid] for sid in top["sample"]]]
            titles = [f"{g} -> {t}?" for g, t in zip(top["given_class"], top["suggested_class"], strict=False)]
            out.figures["label_issues"] = image_grid(
                images, titles, ncols=10, suptitle=f"likely mislabelled ({split_name}): given -> suggested"
            )
        out.info["probabilities"] = source
        return out

    def _check_labels(self, labels: np.ndarray, split_name: str, classes: list[str]) -> None:
        """Confident learning needs two classes, and cross-validation two images of every class present."""
        present, counts = np.unique(labels, return_counts=True)
        if len(present) < 2:
            raise InvalidInputError(
                f"label-issues: the {split_name} split has a single class; confident learning needs at least two"
            )
        rare = [classes[c] for c, k in zip(present, counts, strict=False) if k < 2]
        if rare and self.config.probabilities != "model":
            raise InvalidInputError(
                f"label-issues: class {', '.join(rare)} has a single image in the {split_name} split; cross-validation "
                'needs at least 2 per class (add images or use probabilities = "model" on held-out data)'
            )

    def _split(self, data: AuditData) -> tuple[str, Split]:
        choice = self.config.split
        if choice == "auto":
            choice = "train" if data.train is not None and len(data.train) else "eval"
        if choice == "train":
            if data.train is None or not len(data.train):
                raise InvalidInputError(
                    f'label-issues: split = "train" but dataset \'{data.name}\' has no training split; use split = "eval"'
                )
            return "train", data.train
        return "eval", data.eval

    def _probabilities(
        self,
        model: AuditedModel,
        split: Split,
        present: np.ndarray,
        split_name: str,
        ctx: CheckContext,
        out: CheckOutput,
    ) -> tuple[np.ndarray, str]:
        cfg: LabelIssuesConfig = self.config
        source = cfg.probabilities
        if source == "model":
            if split_name == "train":
                out.warnings.append(
                    'probabilities = "model" on the training split: the model has seen these labels and may have '
                    "memorised the wrong ones, so issues are under-reported; prefer cv-features"
                )
            logits = model.logits(split.x, ctx.batch_size)
            if model.outputs_probabilities:
                probs = logits.clamp_min(0)
            else:
                probs = logits.softmax(dim=1)
            P = probs.double().numpy()[:, present]
            return P / P.sum(axis=1, keepdims=True).clip(min=1e-12), source
        features = penultimate_features(model, split.x, ctx.batch_size) if source == "cv-features" else None
        if features is None:
            if source == "cv-features":
                out.warnings.append("no final linear layer to read features from; used the logits instead (cv-logits)")
            source = "cv-logits"
            logits = model.logits(split.x, ctx.batch_size)
            features = (logits.clamp_min(1e-12).log() if model.outputs_probabilities else logits).double().numpy()
        s = split.y.numpy()
        smallest = int(min(np.sum(s == c) for c in present))
        folds = min(cfg.folds, smallest)
        if folds < cfg.folds:
            out.warnings.append(
                f"only {smallest} images in the smallest class: {folds}-fold instead of {cfg.folds}-fold cross-validation"
            )
        code = np.searchsorted(present, s)
        return cross_validated_probabilities(features, code, folds, ctx.seed), source

    def _bootstrap(self, P: np.ndarray, s: np.ndarray, ctx: CheckContext) -> tuple[float, float] | None:
        """95% percentile interval of the noise rate over bootstrap resamples of the images."""
        if not self.config.bootstrap:
            return None
        gen = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator(self.name)).item()))
        rates = []
        for _ in range(self.config.bootstrap):
            i = gen.integers(0, len(s), len(s))
            _, counts, _ = confident_joint(P[i], s[i])
            rates.append(1.0 - np.trace(calibrate(counts, s[i])))
        return float(np.quantile(rates, 0.025)), float(np.quantile(rates, 0.975))

    def _group_rows(self, split: Split, issues: np.ndarray, split_name: str, out: CheckOutput) -> list[dict]:
        cfg: LabelIssuesConfig = self.config
        if not len(split.attrs.columns) and not cfg.attributes:
            return []
        rows = []
        for attribute in select_attributes(split.attrs, cfg.attributes, 20, 4, out.warnings.append, split_name):
            groups = attribute.groups(split.attrs[attribute.name])
            for group, flags in pd.Series(issues).groupby(groups.to_numpy()):
                rows.append(
                    rate(
                        "group_label_issue_rate",
                        int(flags.sum()),
                        len(flags),
                        group_attr=attribute.name,
                        group=str(group),
                        split=split_name,
                    )
                )
        return rows

    @staticmethod
    def _ranked(
        split: Split,
        split_name: str,
        result: ConfidentLearning,
        P: np.ndarray,
        s: np.ndarray,
        present: np.ndarray,
        classes: list[str],
    ) -> pd.DataFrame:
        """The flagged images, most likely mislabelled first (lowest probability of the given label)."""
        idx = np.flatnonzero(result.issues)
        self_conf = P[idx, s[idx]]
        others = P[idx].copy()
        others[np.arange(len(idx)), s[idx]] = -np.inf
        best_other = others.argmax(axis=1) if len(idx) else np.zeros(0, dtype=int)
        order = np.argsort(self_conf, kind="stable")
        idx, self_conf, best_other = idx[order], self_conf[order], best_other[order]
        return pd.DataFrame(
            {
                "sample": [split.ids[i] for i in idx],
                "split": split_name,
                "rank": np.arange(1, len(idx) + 1),
                "label": present[s[idx]],
                "suggested": present[best_other],
                "given_class": [classes[present[s[i]]] for i in idx],
                "suggested_class": [classes[present[j]] for j in best_other],
                "self_confidence": self_conf,
                "suggested_confidence": P[idx, best_other] if len(idx) else np.zeros(0),
            }
        )

    def headline(self, table: pd.DataFrame) -> Headline | None:
        row = table[table["metric"] == "estimated_noise_rate"]
        return Headline.from_row(row.iloc[0], "estimated label noise rate", "lower") if len(row) else None

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

from ...data import Split, stratified_sample
from ...errors import InvalidInputError
from ...estimate import CostInputs, Passes, Probe, Work
from ...methods.bias.groups import select_attributes
from ...methods.bias.labels import (
    ConfidentLearning,
    calibrate,
    confident_joint,
    cross_validated_probabilities,
    find_label_issues,
    penultimate_features,
)
from ...models import AuditedModel
from ...models.outputs import as_logits
from ...options import option
from ...results.plots import image_grid
from ...results.schema import rate, value
from .. import AuditData, Check, CheckContext, CheckOutput, Headline, register

SOURCES = ("cv-features", "cv-logits", "model")
METHODS = ("prune_by_noise_rate", "confident_joint", "both")


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
    reads_train = True
    Config = LabelIssuesConfig

    def estimate_passes(self, inputs: CostInputs) -> Passes:
        """One forward pass over the audited split (features or probabilities); the cross-validation is extra."""
        use_train = self.config.split == "train" or (self.config.split == "auto" and inputs.n_train > 0)
        size = inputs.n_train if use_train else inputs.n
        m = min(size, self.config.max_samples or size)
        return Passes(m, note="cross-validation is extra", batch=min(m, inputs.batch_size))

    def estimate_work(self, inputs: CostInputs, probe: Probe) -> Work:
        """The grid of the (up to 20) likeliest label issues."""
        return probe.figures(grids=[min(20, inputs.n_train or inputs.n)])

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
            features = as_logits(logits, model.outputs_probabilities).double().numpy()
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

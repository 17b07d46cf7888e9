"""``dataset-bias``: what the data alone teaches a model, before any model is trained.

Class balance per split; for every group attribute the attribute x class contingency with
Cramer's V, normalised mutual information and a chi-square (or permutation) p-value; a
shortcut probe (a linear classifier on cheap image statistics, cross-validated, against the
majority baseline); and near-duplicates between the training and evaluation images.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ...data import Split, stratified_sample
from ...estimate import CostInputs, Passes, Probe, Work
from ...methods.bias.dataset import association_stats, nearest, probe_features, shortcut_probe, thumbnails
from ...methods.bias.groups import Attribute, select_attributes
from ...models import AuditedModel
from ...options import option
from ...results.plots import figure_png, image_grid
from ...results.schema import rate, value
from .. import AuditData, Check, CheckContext, CheckOutput, Headline, register


@dataclass
class DatasetBiasConfig:
    """Options of ``[checks.dataset-bias]``."""

    attributes: list[str] = option([], "attributes to analyse; [] = all")
    max_groups: int = option(20, "attribute handling as in groups", range=">= 2", unit="groups")
    bins: int = option(4, "attribute handling as in groups", range=">= 2", unit="groups")
    flag_cramers_v: float = option(0.5, "V at or above which an attribute is flagged", range="(0, 1]")
    permutations: int = option(
        0, "0 = chi-square p-value; N = permutation test with N shuffles (seeded)", range=">= 0", unit="shuffles"
    )
    probe: bool = option(True, "run the shortcut probe")
    probe_folds: int = option(5, "cross-validation folds", range=">= 2", unit="folds")
    probe_max_samples: int = option(
        4000, "images per split for the probe (class-stratified sample)", range=">= 20", unit="images"
    )
    flag_probe_lift: float = option(0.5, "lift at or above which a probe is flagged", range="(0, 1]")
    duplicates: bool = option(True, "search train/eval near-duplicates (needs a training split)")
    duplicate_threshold: float = option(
        0.08, "RMS distance of standardised 16x16 thumbnails below which two images are near-duplicates", range="[0, 2)"
    )


def class_balance(y: np.ndarray, classes: list[str], split: str) -> list[dict]:
    """Counts and shares per class, imbalance ratio (largest / smallest class) and entropy / log(K)."""
    counts = np.bincount(y, minlength=len(classes))[: len(classes)]
    n = int(counts.sum())
    rows = []
    for cls, count in zip(classes, counts, strict=False):
        rows.append(value("class_count", int(count), n, **{"class": cls}, split=split))
        rows.append(rate("class_share", int(count), n, **{"class": cls}, split=split))
    smallest = counts.min()
    rows.append(value("imbalance_ratio", counts.max() / smallest if smallest > 0 else math.inf, n, split=split))
    share = counts[counts > 0] / n
    entropy = float(-(share * np.log(share)).sum() / math.log(len(classes))) if len(classes) > 1 else math.nan
    rows.append(value("normalized_entropy", entropy, n, split=split))
    rows.append(value("empty_classes", int((counts == 0).sum()), n, split=split))
    return rows


@register
class DatasetBiasCheck(Check):
    name = "dataset-bias"
    family = "audits"
    title = "Dataset bias"
    description = (
        "Looks at the data, not the model: class balance, how strongly each group attribute predicts the "
        "label (Cramer's V, mutual information), whether trivial image statistics (colour, brightness, "
        "border, background) predict the label (a shortcut a CNN will take), and training images that "
        "nearly duplicate evaluation images (leakage). A flagged attribute or probe means a model can score "
        "well without looking at the object."
    )
    reference = (
        "Torralba & Efros 2011 (dataset bias); Geirhos et al. 2020 (shortcut learning); Cramer 1946; "
        "Barz & Denzler 2020 (train/test duplicates)."
    )
    version = "1"
    reads_train = True
    Config = DatasetBiasConfig

    def estimate_passes(self, inputs: CostInputs) -> Passes:
        return Passes(0, note="no model passes; probes and duplicate search are extra")

    def estimate_work(self, inputs: CostInputs, probe: Probe) -> Work:
        """The shortcut probes: image-statistics features and a cross-validated classifier per split, timed
        on the calibration images and on them twice over (two alternating labels), a fixed cost per fit
        plus a cost per image fitted to the two, and scaled to each split's probed images."""
        cfg, x = self.config, probe.x.cpu()
        if not cfg.probe or len(x) < 4:
            return Work()
        folds = min(cfg.probe_folds, len(x) // 2)

        def fit(images: torch.Tensor) -> Callable[[], object]:
            y = np.arange(len(images)) % 2
            return lambda: [shortcut_probe(f, y, folds, 0) for f in probe_features(images, None).values()]

        one = probe.timed(("shortcut probe", x.shape), fit(x))
        two = probe.timed(("shortcut probe", 2, x.shape), fit(torch.cat([x, x.flip(0)])))
        per_image = max(two - one, 0.0) / len(x)
        sizes = [min(size, cfg.probe_max_samples) for size in (inputs.n, inputs.n_train) if size]
        seconds = sum(max(one - per_image * len(x), 0.0) + per_image * size for size in sizes)
        return Work(seconds, f"shortcut probes on {sum(sizes):,} images")

    def run(self, model: AuditedModel | None, data: AuditData, ctx: CheckContext) -> CheckOutput:
        cfg: DatasetBiasConfig = self.config
        out = CheckOutput()
        splits = (
            {"train": data.train, "eval": data.eval}
            if data.train is not None and len(data.train)
            else {"eval": data.eval}
        )
        attributes = select_attributes(data.eval.attrs, cfg.attributes, cfg.max_groups, cfg.bins, out.warnings.append)
        gen = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator(self.name)).item()))
        flagged: set[str] = set()
        reference_split = "train" if "train" in splits else "eval"
        for split_name, split in splits.items():
            y = split.y.numpy()
            out.rows += class_balance(y, data.classes, split_name)
            for attribute in attributes:
                out.rows += self._attribute_rows(attribute, split, split_name, data.classes, gen, out)
                if split_name == reference_split:
                    # a split without the attribute (metadata for the test images only) has no association row
                    v = next((r["value"] for r in reversed(out.rows) if r["metric"] == "cramers_v"), math.nan)
                    if v >= cfg.flag_cramers_v:
                        flagged.add(attribute.name)
            if cfg.probe:
                out.rows += self._probe_rows(split, split_name, ctx, flagged if split_name == reference_split else None)
        for attribute in attributes:
            out.rows.append(
                value(
                    "shortcut_risk",
                    float(attribute.name in flagged),
                    None,
                    group_attr=attribute.name,
                    split=reference_split,
                )
            )
        if flagged:
            out.warnings.append(
                f"the label is strongly associated with {', '.join(sorted(flagged))} in the {reference_split} split: "
                "a model may learn the shortcut instead of the object"
            )
        if cfg.duplicates and "train" in splits:
            self._duplicates(data, out)
        figure = _contingency_figure(data, attributes, reference_split) if attributes else None
        if figure is not None:
            out.figures["attribute_association"] = figure
        return out

    def preflight(self, model: AuditedModel | None, data: AuditData) -> None:
        cfg: DatasetBiasConfig = self.config
        select_attributes(data.eval.attrs, cfg.attributes, cfg.max_groups, cfg.bins, lambda _message: None)

    def _attribute_rows(
        self,
        attribute: Attribute,
        split: Split,
        split_name: str,
        classes: list[str],
        gen: np.random.Generator,
        out: CheckOutput,
    ) -> list[dict]:
        if attribute.name not in split.attrs.columns:
            out.warnings.append(f"attribute '{attribute.name}' is missing from the {split_name} split")
            return []
        groups = attribute.groups(split.attrs[attribute.name])
        y = split.y.numpy()
        n = len(y)
        rows = []
        for (group, k), count in pd.crosstab(groups.to_numpy(), y).stack().items():
            rows.append(
                value(
                    "contingency_count",
                    int(count),
                    n,
                    group_attr=attribute.name,
                    group=str(group),
                    **{"class": classes[int(k)]},
                    split=split_name,
                )
            )
        shares = groups.value_counts()
        rows.append(
            rate(
                "min_group_share",
                int(shares.min()),
                n,
                group_attr=attribute.name,
                group=str(shares.idxmin()),
                split=split_name,
            )
        )
        stats = association_stats(groups, y, self.config.permutations, gen)
        if math.isnan(stats["cramers_v"]):
            out.warnings.append(
                f"attribute '{attribute.name}' has a single group or class in the {split_name} split: no association measured"
            )
        rows.append(value("cramers_v", stats["cramers_v"], n, group_attr=attribute.name, split=split_name))
        rows.append(value("normalized_mutual_info", stats["nmi"], n, group_attr=attribute.name, split=split_name))
        test = f"permutation-{self.config.permutations}" if self.config.permutations else "chi-square"
        rows.append(
            value("association_p_value", stats["p_value"], n, group_attr=attribute.name, split=split_name, variant=test)
        )
        return rows

    def _probe_rows(self, split: Split, split_name: str, ctx: CheckContext, flagged: set[str] | None) -> list[dict]:
        cfg: DatasetBiasConfig = self.config
        index = stratified_sample(split.y, cfg.probe_max_samples, ctx.seed)
        part = split.subset(index)
        y = part.y.numpy()
        baseline = float(np.bincount(y).max() / len(y))
        rows = [value("probe_baseline_accuracy", baseline, len(y), split=split_name)]
        for family, features in probe_features(part.x, part.masks).items():
            result = shortcut_probe(features, y, cfg.probe_folds, ctx.seed)
            if result is None:
                continue
            correct, n = result
            accuracy = correct / n
            lift = (accuracy - baseline) / (1 - baseline) if baseline < 1 else math.nan
            rows.append(rate("probe_accuracy", correct, n, variant=family, split=split_name))
            rows.append(value("probe_lift", lift, n, variant=family, split=split_name))
            if flagged is not None and family != "tiny-image":
                risky = lift >= cfg.flag_probe_lift
                rows.append(value("shortcut_risk", float(risky), None, variant=family, split=split_name))
                if risky:
                    flagged.add(f"image statistics ({family})")
        return rows

    def _duplicates(self, data: AuditData, out: CheckOutput) -> None:
        assert data.train is not None
        dist, index = nearest(thumbnails(data.eval.x), thumbnails(data.train.x))
        hits = np.flatnonzero(dist <= self.config.duplicate_threshold)
        n = len(dist)
        out.rows.append(rate("near_duplicate_rate", len(hits), n, split="eval"))
        out.rows.append(value("nearest_train_distance_median", float(np.median(dist)), n, split="eval"))
        if len(hits):
            out.warnings.append(f"{len(hits)} evaluation images have a near-duplicate in the training split (leakage)")
            order = hits[np.argsort(dist[hits])]
            out.samples = pd.DataFrame(
                {
                    "sample": [data.eval.ids[i] for i in order],
                    "train_match": [data.train.ids[index[i]] for i in order],
                    "distance": dist[order],
                    "label": data.eval.y.numpy()[order],
                    "train_label": data.train.y.numpy()[index[order]],
                }
            )
            shown = order[:10]
            pairs = torch.stack([img for i in shown for img in (data.eval.x[i], data.train.x[index[i]])])
            titles = [t for i in shown for t in (f"eval {data.eval.ids[i]}"[-18:], f"train d={dist[i]:.3f}")]
            out.figures["near_duplicates"] = image_grid(
                pairs, titles, ncols=10, suptitle="evaluation image and its nearest training image"
            )

    def headline(self, table: pd.DataFrame) -> Headline | None:
        v = table[table["metric"] == "cramers_v"]
        if len(v):
            split = "train" if (v["split"] == "train").any() else "eval"
            part = v[v["split"] == split]
            return Headline.from_row(
                part.loc[part["value"].idxmax()], "max Cramer's V (attribute vs label)", "lower", "value"
            )
        lift = table[(table["metric"] == "probe_lift") & (table["variant"] != "tiny-image")]
        if len(lift):
            return Headline.from_row(lift.loc[lift["value"].idxmax()], "shortcut probe lift", "lower", "value")
        return None


def _contingency_figure(data: AuditData, attributes: list[Attribute], split_name: str) -> bytes | None:
    """Label x attribute counts on the split, or None when the split carries none of the attributes."""
    import matplotlib.pyplot as plt

    split = data.train if split_name == "train" else data.eval
    assert split is not None
    usable = [a for a in attributes if a.name in split.attrs.columns]
    if not usable:
        return None
    fig, axes = plt.subplots(1, len(usable), figsize=(4.2 * len(usable), 3.6), squeeze=False, layout="constrained")
    for ax, attribute in zip(axes[0], usable, strict=False):
        table = pd.crosstab(attribute.groups(split.attrs[attribute.name]).to_numpy(), split.y.numpy())
        share = table.div(table.sum(axis=1), axis=0)
        ax.imshow(share.to_numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(table.columns)), [data.classes[int(c)] for c in table.columns], fontsize=7)
        ax.set_yticks(range(len(table.index)), list(table.index), fontsize=7)
        ax.set_title(f"P(class | {attribute.name}), {split_name}", fontsize=9)
    return figure_png(fig)

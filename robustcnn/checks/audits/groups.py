"""``groups``: prediction bias across the groups of every attribute (accuracy, recall and
selection rate per group, worst-group gaps, demographic parity and equalized odds),
bias amplification (Zhao et al. 2017; directional, Wang & Russakovsky 2021) and, where the
dataset can redraw a sample with another attribute value, the counterfactual flip rate.

The measures and ``Attribute`` / ``select_attributes`` live in ``methods.bias.groups``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ...data import Split
from ...data.base import adapt_split
from ...errors import InvalidInputError
from ...estimate import CostInputs, Passes, Probe, Work
from ...methods.bias.groups import (
    Attribute,
    directional_bias_amplification,
    equalized_odds_difference,
    group_counts,
    joint_counts,
    rate_gap,
    select_attributes,
    zhao_bias_amplification,
)
from ...models import AuditedModel
from ...options import option
from ...results.plots import figure_png, image_grid
from ...results.schema import rate, value
from .. import AuditData, Check, CheckContext, CheckOutput, Headline, register


@dataclass
class GroupsConfig:
    """Options of ``[checks.groups]``."""

    attributes: list[str] = option([], "attributes to analyse; [] = all")
    max_groups: int = option(
        20, "more distinct values than this: bin (numeric) or refuse (other)", range=">= 2", unit="groups"
    )
    bins: int = option(4, "quantile groups for a binned numeric attribute", range=">= 2", unit="groups")
    min_group_size: int = option(
        10, "smallest group that counts for worst-group, gaps, DP and EO", range=">= 1", unit="images"
    )
    bias_amplification: bool = option(
        True, "compute the bias-amplification rows (needs a training split with the attribute)"
    )
    bootstrap: int = option(
        200, "bootstrap resamples for the bias-amplification intervals (0 = none)", range=">= 0", unit="resamples"
    )
    counterfactual: bool = option(True, "run counterfactual swaps where the dataset supports them")
    counterfactual_values: int = option(
        0, "swaps per image: 0 = every other value, k = k values drawn per image (seeded)", range=">= 0"
    )


@register
class GroupsCheck(Check):
    name = "groups"
    family = "audits"
    title = "Prediction bias across groups"
    description = (
        "Accuracy, per-class recall and selection rate for every group of every attribute, the worst group "
        "and the gap to the best, demographic-parity and equalized-odds differences per class, bias "
        "amplification against the training labels and, where the dataset can redraw an image with another "
        "attribute value, the share of predictions that flip. A large gap or flip rate means the model's "
        "answer depends on the group, not only on the object."
    )
    reference = (
        "Zhao et al. 2017 (bias amplification, EMNLP); Wang & Russakovsky 2021 (directional bias amplification, "
        "ICML); Hardt et al. 2016 (equalized odds); Sagawa et al. 2020 (worst-group accuracy); fairlearn MetricFrame."
    )
    version = "1"
    reads_train = True
    Config = GroupsConfig

    def estimate_passes(self, inputs: CostInputs) -> Passes:
        note = (
            "counterfactual redraws (built-in bias sets) add a pass per swapped image"
            if self.config.counterfactual
            else ""
        )
        return Passes(inputs.n, note=note)

    def estimate_work(self, inputs: CostInputs, probe: Probe) -> Work:
        """The group-accuracy chart (the per-attribute figures depend on the attributes found)."""
        return probe.figures(charts=[1])

    def run(self, model: AuditedModel, data: AuditData, ctx: CheckContext) -> CheckOutput:
        cfg: GroupsConfig = self.config
        out = CheckOutput()
        attributes = self._attributes(data, out.warnings.append)
        logits = model.logits(data.eval.x, ctx.batch_size)
        pred = logits.argmax(dim=1).numpy()
        y = data.eval.y.numpy()
        samples = pd.DataFrame({"sample": data.eval.ids, "label": y, "pred": pred, "correct": pred == y})
        for attribute in attributes:
            groups = attribute.groups(data.eval.attrs[attribute.name])
            samples[f"attr_{attribute.name}"] = groups.to_numpy()
            out.rows += self._disaggregate(attribute.name, y, pred, groups, data.classes, out.warnings)
            if cfg.bias_amplification:
                out.rows += self._amplification(attribute, y, pred, groups, data, ctx, out)
        if cfg.counterfactual:
            self._counterfactuals(model, data, attributes, pred, samples, ctx, out)
        out.samples = samples
        out.figures["group_accuracy"] = _accuracy_figure(out.rows)
        return out

    def preflight(self, model: AuditedModel, data: AuditData) -> None:
        self._attributes(data, lambda _message: None)

    def _attributes(self, data: AuditData, warn: Callable[[str], None]) -> list[Attribute]:
        cfg: GroupsConfig = self.config
        attributes = select_attributes(data.eval.attrs, cfg.attributes, cfg.max_groups, cfg.bins, warn)
        if not attributes:
            raise InvalidInputError(
                f"groups: dataset '{data.name}' has no usable group attributes; add metadata.csv columns or .npz attribute arrays"
            )
        return attributes

    def _disaggregate(
        self, attr: str, y: np.ndarray, pred: np.ndarray, groups: pd.Series, classes: list[str], warnings: list[str]
    ) -> list[dict]:
        cfg: GroupsConfig = self.config
        seen = sorted(set(np.unique(y)) | set(np.unique(pred)))
        frame = group_counts(y, pred, groups, seen)
        rows = []
        for group, stats in frame.iterrows():
            rows.append(rate("group_accuracy", stats["correct"], stats["count"], group_attr=attr, group=str(group)))
            rows.append(value("group_count", stats["count"], stats["count"], group_attr=attr, group=str(group)))
        large = frame[frame["count"] >= cfg.min_group_size]
        small = sorted(str(g) for g in frame.index.difference(large.index))
        if small:
            warnings.append(
                f"attribute '{attr}': groups {', '.join(small)} have fewer than {cfg.min_group_size} images and are left out of the gaps"
            )
        if len(large) < 2:
            return rows
        accuracy = large["correct"] / large["count"]
        worst, best = accuracy.idxmin(), accuracy.idxmax()
        n = int(large["count"].sum())
        rows.append(
            rate(
                "worst_group_accuracy",
                large.loc[worst, "correct"],
                large.loc[worst, "count"],
                group_attr=attr,
                group=str(worst),
            )
        )
        rows.append(value("accuracy_gap", accuracy[best] - accuracy[worst], n, group_attr=attr, group=str(worst)))
        rows.append(
            value(
                "accuracy_ratio",
                accuracy[worst] / accuracy[best] if accuracy[best] > 0 else np.nan,
                n,
                group_attr=attr,
                group=str(worst),
            )
        )
        dp_all, eo_all = [], []
        for c in seen:
            cls = classes[c]
            for group, stats in frame.iterrows():
                rows.append(
                    rate(
                        "group_recall",
                        stats[f"tp_{c}"],
                        stats[f"pos_{c}"],
                        **{"class": cls},
                        group_attr=attr,
                        group=str(group),
                    )
                )
                rows.append(
                    rate(
                        "group_selection_rate",
                        stats[f"sel_{c}"],
                        stats["count"],
                        **{"class": cls},
                        group_attr=attr,
                        group=str(group),
                    )
                )
            negatives = large["count"] - large[f"pos_{c}"]
            tpr = (large[f"tp_{c}"] / large[f"pos_{c}"]).where(large[f"pos_{c}"] > 0)
            fpr = (large[f"fp_{c}"] / negatives).where(negatives > 0)
            dp = rate_gap(large[f"sel_{c}"] / large["count"])
            eo = equalized_odds_difference(tpr, fpr)
            rows.append(value("demographic_parity_difference", dp, n, **{"class": cls}, group_attr=attr))
            rows.append(value("equalized_odds_difference", eo, n, **{"class": cls}, group_attr=attr))
            dp_all.append(dp)
            eo_all.append(eo)
        rows.append(value("max_demographic_parity_difference", float(np.nanmax(dp_all)), n, group_attr=attr))
        if not np.isnan(eo_all).all():
            rows.append(value("max_equalized_odds_difference", float(np.nanmax(eo_all)), n, group_attr=attr))
        return rows

    def _amplification(
        self,
        attribute: Attribute,
        y: np.ndarray,
        pred: np.ndarray,
        groups: pd.Series,
        data: AuditData,
        ctx: CheckContext,
        out: CheckOutput,
    ) -> list[dict]:
        train = data.train
        if train is None or attribute.name not in train.attrs.columns:
            out.warnings.append(
                f"attribute '{attribute.name}': no training labels with this attribute, so no bias amplification"
            )
            return []
        train_groups = attribute.groups(train.attrs[attribute.name])
        names = sorted(set(groups) | set(train_groups))
        unseen = sorted(set(train_groups) - set(groups))
        if unseen:
            out.warnings.append(
                f"attribute '{attribute.name}': training groups {', '.join(unseen)} have no evaluation images"
            )
        code = {g: i for i, g in enumerate(names)}
        g_eval = groups.map(code).to_numpy()
        g_train = train_groups.map(code).to_numpy()
        y_train = train.y.numpy()
        k, m = len(data.classes), len(names)
        measures = {
            ("bias_amplification", "zhao2017"): lambda i: zhao_bias_amplification(
                y_train, g_train, pred[i], g_eval[i], k, m
            ),
            ("bias_amplification", "zhao2017-eval-reference"): lambda i: zhao_bias_amplification(
                y_train, g_train, pred[i], g_eval[i], k, m, reference=(y[i], g_eval[i])
            ),
            ("directional_bias_amplification", "attribute->task"): lambda i: directional_bias_amplification(
                y_train, g_train, y[i], pred[i], g_eval[i], k, m
            )[0],
        }
        everything = np.arange(len(y))
        gen = np.random.default_rng(
            int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator(self.name, attribute.name)).item())
        )
        draws = [gen.integers(0, len(y), len(y)) for _ in range(self.config.bootstrap)]
        shift = 0.5 * float(
            np.abs(joint_counts(y_train, g_train, k, m) / len(y_train) - joint_counts(y, g_eval, k, m) / len(y)).sum()
        )
        rows = [value("train_eval_tv_distance", shift, len(y), group_attr=attribute.name)]
        if shift > 0.1:
            out.warnings.append(
                f"attribute '{attribute.name}': (class, group) frequencies differ between training and evaluation "
                f"(total variation {shift:.2f}); the zhao2017 value mixes that shift with amplification, read zhao2017-eval-reference"
            )
        for (metric, variant), fn in measures.items():
            point = fn(everything)
            ci = None
            if draws:
                boot = np.array([fn(i) for i in draws], dtype=float)
                boot = boot[~np.isnan(boot)]
                if len(boot):
                    ci = (float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975)))
            rows.append(value(metric, point, len(y), ci, group_attr=attribute.name, variant=variant))
        delta = directional_bias_amplification(y_train, g_train, y, pred, g_eval, k, m)[1]
        out.figures[f"bias_amplification_{attribute.name}"] = _delta_figure(delta, names, data.classes, attribute.name)
        return rows

    def _counterfactuals(
        self,
        model: AuditedModel,
        data: AuditData,
        attributes: list[Attribute],
        pred: np.ndarray,
        samples: pd.DataFrame,
        ctx: CheckContext,
        out: CheckOutput,
    ) -> None:
        from ...data.bias_sets import counterfactuals_for

        chosen = {a.name for a in attributes}
        for cf in counterfactuals_for(data.name):
            if cf.attribute not in chosen:
                continue
            original = data.eval.attrs[cf.attribute].astype(str).tolist()
            try:
                redrawn = self._adapt(cf.render(data.eval.ids, original), data.eval)
            except ValueError as exc:
                out.warnings.append(f"counterfactual '{cf.attribute}' unavailable: {exc}")
                continue
            if redrawn.shape != data.eval.x.shape or float((redrawn - data.eval.x).abs().max()) > 1e-3:
                out.warnings.append(
                    f"counterfactual '{cf.attribute}': redrawing does not reproduce the evaluation images; skipped"
                )
                continue
            pairs = self._swaps(original, cf.values, ctx, cf.attribute)
            flips = np.zeros(len(pred), dtype=int)
            tried = np.zeros(len(pred), dtype=int)
            per_value: dict[str, list[int]] = {v: [0, 0, 0] for v in cf.values}  # flips, swaps, correct
            y = data.eval.y.numpy()
            examples = []
            for start in range(0, len(pairs), 1000):
                chunk = pairs[start : start + 1000]
                idx = np.array([i for i, _ in chunk])
                vals = [v for _, v in chunk]
                images = self._adapt(cf.render([data.eval.ids[i] for i in idx], vals), data.eval)
                new = model.logits(images, ctx.batch_size).argmax(dim=1).numpy()
                flipped = new != pred[idx]
                np.add.at(flips, idx, flipped.astype(int))
                np.add.at(tried, idx, 1)
                for v, f, ok in zip(vals, flipped, new == y[idx], strict=False):
                    per_value[v][0] += int(f)
                    per_value[v][1] += 1
                    per_value[v][2] += int(ok)
                if not examples:
                    examples = list(zip(idx[:40], vals[:40], new[:40], images[:40], strict=False))
            attr = cf.attribute
            total = int(tried.sum())
            out.rows.append(rate("counterfactual_flip_rate", int(flips.sum()), total, group_attr=attr))
            out.rows.append(rate("counterfactual_sample_flip_rate", int((flips > 0).sum()), len(pred), group_attr=attr))
            out.rows.append(
                rate("counterfactual_accuracy", sum(v[2] for v in per_value.values()), total, group_attr=attr)
            )
            for v, (f, n, _) in per_value.items():
                if n:
                    out.rows.append(rate("counterfactual_flip_rate", f, n, group_attr=attr, group=v))
            samples[f"cf_{attr}_flips"] = flips
            samples[f"cf_{attr}_swaps"] = tried
            out.figures[f"counterfactual_{attr}"] = _counterfactual_figure(data, examples, pred, attr)
            out.info[f"counterfactual_{attr}"] = {"swaps": total, "values": list(cf.values)}

    def _swaps(
        self, original: list[str], values: tuple[str, ...], ctx: CheckContext, attr: str
    ) -> list[tuple[int, str]]:
        """(sample, new value) pairs: every other value, or ``counterfactual_values`` of them drawn per sample."""
        k = self.config.counterfactual_values
        gen = ctx.generator(self.name, "counterfactual", attr)
        pairs = []
        for i, current in enumerate(original):
            others = [v for v in values if v != current]
            if k and k < len(others):
                pick = torch.randperm(len(others), generator=gen)[:k].sort().values.tolist()
                others = [others[j] for j in pick]
            pairs += [(i, v) for v in others]
        return pairs

    @staticmethod
    def _adapt(images: torch.Tensor, like: Split) -> torch.Tensor:
        """Redrawn native images converted to the channels and size the model sees."""
        c, h, w = like.shape
        split = Split(images, torch.zeros(len(images), dtype=torch.long), [str(i) for i in range(len(images))])
        return adapt_split(split, c, (h, w), [], "counterfactual").x

    def headline(self, table: pd.DataFrame) -> Headline | None:
        gaps = table[table["metric"] == "accuracy_gap"]
        if len(gaps):
            return Headline.from_row(gaps.loc[gaps["value"].idxmax()], "worst-group accuracy gap", "lower")
        return None


def _accuracy_figure(rows: list[dict]) -> bytes:
    import matplotlib.pyplot as plt

    table = pd.DataFrame([r for r in rows if r["metric"] == "group_accuracy"])
    attrs = list(dict.fromkeys(table["group_attr"]))
    fig, axes = plt.subplots(len(attrs), 1, figsize=(7, 1.2 + 0.28 * len(table)), squeeze=False, layout="constrained")
    for ax, attr in zip(axes[:, 0], attrs, strict=False):
        part = table[table["group_attr"] == attr]
        pos = np.arange(len(part))
        err = np.vstack([part["value"] - part["ci_low"], part["ci_high"] - part["value"]])
        ax.barh(pos, part["value"], xerr=err, color="#4c72b0", capsize=2)
        ax.set_yticks(pos, [f"{g} (n={n})" for g, n in zip(part["group"], part["n"], strict=False)], fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_title(f"accuracy by {attr} (95% Wilson CI)", fontsize=9)
    return figure_png(fig)


def _delta_figure(delta: np.ndarray, groups: list[str], classes: list[str], attr: str) -> bytes:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1 + 0.45 * len(classes), 1 + 0.35 * len(groups)), layout="constrained")
    bound = float(np.nanmax(np.abs(delta))) if np.isfinite(delta).any() else 1.0
    im = ax.imshow(delta, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_xticks(range(len(classes)), classes, fontsize=7)
    ax.set_yticks(range(len(groups)), groups, fontsize=7)
    ax.set_xlabel("class")
    ax.set_ylabel(attr)
    ax.set_title("P(pred = class | group) - P(label = class | group)", fontsize=8)
    fig.colorbar(im, ax=ax)
    return figure_png(fig)


def _counterfactual_figure(data: AuditData, examples: list, pred: np.ndarray, attr: str) -> bytes:
    """Each example image first as evaluated, then with the attribute swapped; titles give the predictions."""
    images, titles, last = [], [], None
    for i, v, new, img in examples:
        if i != last:
            images.append(data.eval.x[i])
            titles.append(f"as is: {data.classes[int(pred[i])]}")
            last = i
        images.append(img)
        titles.append(f"{v}: {data.classes[int(new)]}")
    images, titles = images[:20], titles[:20]
    stacked = torch.stack(images) if images else torch.zeros(0, *data.eval.shape)
    return image_grid(stacked, titles, ncols=10, suptitle=f"{attr} swapped: predicted class")

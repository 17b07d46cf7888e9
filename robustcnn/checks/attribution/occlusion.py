"""``occlusion``: occlusion sensitivity maps (Zeiler & Fergus 2014) and where the model looks.

A baseline-valued square slides over each image; the map records the drop in the true class's
probability, averaged over the windows covering each pixel (captum's ``Occlusion``). With object
masks, the share of positive sensitivity falling outside the object tells whether the model
looks at the cow or at the grass.
"""

from __future__ import annotations

import math

import pandas as pd
import torch
import torch.nn.functional as F

from ...artifacts import ArtifactKey, Artifacts
from ...checks import AuditData, CheckContext, CheckOutput, Headline, SampleCheck, register
from ...data import Split
from ...estimate import CostInputs, Passes, Probe, Work
from ...methods.attribution.occlusion import (
    MAP_SIDE,
    OcclusionConfig,
    class_means_figure,
    correct_indicator,
    examples_figure,
    occlusion_attribution,
    outside_share,
    probability_forward,
    window_and_stride,
)
from ...models import AuditedModel
from ...results.schema import rate, value

MAPS = ArtifactKey("occlusion/maps", torch.Tensor, "per shard: each image's pooled occlusion map, for the figures")


@register
class OcclusionCheck(SampleCheck):
    name = "occlusion"
    family = "attribution"
    title = "Occlusion sensitivity"
    description = (
        "A grey square slides over each image and the drop in the true class's probability is mapped, showing "
        "which regions the prediction depends on. The flip rate is the share of correct predictions one such "
        "square can change. With object masks, the share of sensitivity outside the object (next to the "
        "background's share of pixels) shows whether the model relies on the background rather than the object."
    )
    reference = "Zeiler & Fergus (2014), Visualizing and Understanding Convolutional Networks, ECCV; captum Occlusion."
    version = "1"
    Config = OcclusionConfig

    def estimate_passes(self, inputs: CostInputs) -> Passes:
        """A forward pass, then captum's occlusion of all images (probabilities) and of the correctly
        classified ones (their decision): each an unoccluded pass plus one per window position."""
        _, h, w = inputs.shape
        window, stride = window_and_stride(self.config, h, w)
        positions = (math.ceil((h - window) / stride) + 1) * (math.ceil((w - window) / stride) + 1)
        return Passes(inputs.n * (2 + positions) + inputs.correct * (1 + positions), batch=inputs.batch_size)

    def estimate_work(self, inputs: CostInputs, probe: Probe) -> Work:
        """The two figures: class means (up to 20 classes) and examples, each panel an image under a heat map."""
        figures = [2 * min(inputs.num_classes, 20, inputs.n)]
        figures += [2 * min(self.config.examples, inputs.n)] if self.config.examples else []
        return probe.figures(grids=figures)

    def measure(self, model: AuditedModel, batch: Split, ctx: CheckContext) -> CheckOutput:
        cfg: OcclusionConfig = self.config
        _, _, h, w = batch.x.shape
        window, stride = window_and_stride(cfg, h, w)
        x, y = batch.x.to(model.device), batch.y.to(model.device)
        with torch.no_grad():
            probs = probability_forward(model)(x)
        pred = probs.argmax(dim=1)
        sensitivity = occlusion_attribution(
            probability_forward(model), x, y, window, stride, cfg.baseline, ctx.batch_size
        ).sum(dim=1, keepdim=True)
        correct = pred == y
        flipped = torch.full((len(x),), math.nan)
        if correct.any():
            drops = occlusion_attribution(
                correct_indicator(model), x[correct], y[correct], window, stride, cfg.baseline, ctx.batch_size
            )
            flipped[correct.cpu()] = (drops.amax(dim=(1, 2, 3)) > 0).float().cpu()
        samples = pd.DataFrame(
            {
                "sample": batch.ids,
                "label": batch.y.numpy(),
                "pred": pred.cpu().numpy(),
                "true_prob": probs.gather(1, y[:, None])[:, 0].cpu().numpy(),
                "peak_drop": sensitivity.amax(dim=(1, 2, 3)).cpu().numpy(),
                "flipped": flipped.numpy(),
            }
        )
        if batch.masks is not None:
            share, background = outside_share(sensitivity.cpu(), batch.masks)
            samples["outside_share"], samples["background_area"] = share.numpy(), background.numpy()
        pooled = F.adaptive_avg_pool2d(sensitivity.cpu(), (min(h, MAP_SIDE), min(w, MAP_SIDE)))
        return CheckOutput(samples=samples, artifacts=Artifacts({MAPS: pooled}))

    def summarize(self, samples: pd.DataFrame, artifacts: Artifacts, data: AuditData, ctx: CheckContext) -> CheckOutput:
        h, w = data.eval.x.shape[-2:]
        window, stride = window_and_stride(self.config, h, w)
        params = {"window": window, "stride": stride, "baseline": str(self.config.baseline)}
        rows = _rows(samples, params)
        for k, cls in enumerate(data.classes):
            part = samples[samples["label"] == k]
            if len(part):
                rows += _rows(part, {**params, "class": cls})
        maps = artifacts.get(MAPS)
        out = CheckOutput(rows=rows, info={"window": window, "stride": stride, "baseline": self.config.baseline})
        if maps is not None and len(maps):
            index = {sid: i for i, sid in enumerate(data.eval.ids)}
            images = data.eval.x[[index[s] for s in samples["sample"]]]
            out.figures["occlusion-class-means"] = class_means_figure(images, maps, samples, data.classes)
            if self.config.examples:
                out.figures["occlusion-examples"] = examples_figure(
                    images, maps, samples, data.classes, self.config.examples
                )
        return out

    def headline(self, table: pd.DataFrame) -> Headline | None:
        overall = table[table["class"].isna()] if "class" in table else table
        share = overall[overall["metric"] == "sensitivity_outside_object"]
        if len(share):
            return Headline.from_row(share.iloc[0], "sensitivity outside the object", "lower")
        flips = overall[overall["metric"] == "flipped_by_one_occluder"]
        if not len(flips):
            return None
        return Headline.from_row(flips.iloc[0], "correct predictions flipped by one occluder", "lower")


def _mean_ci(v: pd.Series) -> tuple[float, tuple[float, float], int]:
    v = v.dropna().astype(float)
    n = len(v)
    if n == 0:
        return math.nan, (math.nan, math.nan), 0
    m = float(v.mean())
    half = 1.959963984540054 * float(v.std(ddof=1)) / math.sqrt(n) if n > 1 else math.nan
    return m, (m - half, m + half), n


def _rows(samples: pd.DataFrame, params: dict) -> list[dict]:
    """Rows for one group of images: peak drop, flip rate and, with masks, where the sensitivity lies."""
    correct = samples["flipped"].dropna()
    rows = [rate("flipped_by_one_occluder", int(correct.sum()), len(correct), **params)]
    m, ci, n = _mean_ci(samples["peak_drop"])
    rows.append(value("mean_peak_drop", m, n, ci, **params))
    if "outside_share" in samples:
        m, ci, n = _mean_ci(samples["outside_share"])
        rows.append(value("sensitivity_outside_object", m, n, ci, **params))
        bg, bg_ci, bg_n = _mean_ci(samples["background_area"])
        rows.append(value("background_area_share", bg, bg_n, bg_ci, **params))
        rows.append(value("outside_sensitivity_ratio", m / bg if bg > 0 else math.nan, n, None, **params))
    return rows

"""``corruptions``: accuracy under the ImageNet-C / CIFAR-10-C corruptions (Hendrycks & Dietterich 2019),
per corruption and severity, and, against a baseline model's report, corruption error and (relative) mCE."""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ...artifacts import CORRUPTED_IMAGES, Artifacts
from ...data import Split
from ...estimate import CallCost, CostInputs, Passes, Probe, Work
from ...methods.shifts.corruptions import BENCHMARK, CORRUPTIONS, HELD_OUT, PRESETS, corrupt
from ...methods.shifts.frost import TEXTURES, _texture, texture_side
from ...models import AuditedModel
from ...options import option
from ...results.plots import figure_png, image_grid
from ...results.schema import rate, value
from .. import AuditData, CheckContext, CheckOutput, Headline, SampleCheck, register

PROBE_PIXELS = 16 * 32 * 32  # pixels of the images a corruption is timed on (at least 2 images)
FAST_CALL_S = 0.02  # a corruption of the few probe images faster than this is also timed on all of them
SMALL_FROST = 256  # frost textures up to this side are built by the probe itself; larger ones are extrapolated


def frost_setup(h: int, w: int, probe: Probe) -> float:
    """Seconds to build the frost texture bank for (h, w) images: one texture timed at two small sides,
    a power law in the side fitted to them, times the bank's textures."""
    small, large = SMALL_FROST // 2, SMALL_FROST
    a = probe.timed(("frost texture", small), lambda: _texture(0, small))
    b = probe.timed(("frost texture", large), lambda: _texture(0, large))
    power = math.log(max(b, 1e-6) / max(a, 1e-6)) / math.log(large / small)
    return TEXTURES * b * (texture_side(h, w) / large) ** max(power, 2.0)


def _shrunk(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``x`` resized so that its frost textures are small (the frost blend is timed on these)."""
    side = SMALL_FROST // 4
    return torch.nn.functional.interpolate(x, size=(side, max(1, round(side * w / h))), mode="bilinear")


def column(name: str, severity: int) -> str:
    """Per-sample column: was the image classified correctly under ``name`` at ``severity``."""
    return f"correct:{name}:{severity}"


@register
class CorruptionsCheck(SampleCheck):
    name = "corruptions"
    family = "natural shifts"
    title = "Common corruptions"
    description = (
        "Accuracy on the evaluation images under 15 common corruptions (noise, blur, weather, digital) and 4 held-out "
        "ones, at 5 severities each, following ImageNet-C / CIFAR-10-C. Compare each number with clean accuracy: the "
        "gap is what everyday image degradations cost. With a baseline report, corruption error (CE) and mCE are the "
        "model's errors relative to the baseline's (below 1 = more robust than the baseline); relative mCE measures "
        "only the drop from each model's clean error."
    )
    reference = (
        "Hendrycks & Dietterich, Benchmarking neural network robustness to common corruptions and perturbations, "
        "ICLR 2019."
    )
    version = "3"
    provides = (CORRUPTED_IMAGES,)

    @dataclass
    class Config:
        corruptions: list[str] = option(
            list(CORRUPTIONS), "corruptions to run (names above)", choices=CORRUPTIONS, nonempty=True, distinct=True
        )
        severities: list[int] = option(
            [1, 2, 3, 4, 5], "severities to run", range="[1, 5]", nonempty=True, distinct=True
        )
        preset: str = option("auto", "parameter table", choices=("auto", *PRESETS))
        artifact_size: int = option(
            500, "images kept in the corruptions/severity5 artifact (0: none)", range=">= 0", unit="images"
        )

    def estimate_passes(self, inputs: CostInputs) -> Passes:
        cfg = self.config
        return Passes(inputs.n * (1 + len(cfg.corruptions) * len(cfg.severities)))

    def estimate_work(self, inputs: CostInputs, probe: Probe) -> Work:
        """Corrupting the images: each corruption timed at severity 3 on a few calibration images (a second
        call, so one-time set-up is left out), scaled to the evaluation images, the severities and the one
        image per corruption and severity of the examples figure; the frost texture bank, built once per
        image size, timed at two small sides and extrapolated (``frost_setup``); the examples grid and
        the heatmap."""
        cfg = self.config
        _, h, w = inputs.shape
        m = max(2, min(len(probe.x), PROBE_PIXELS // (h * w)))
        per_image, call = 0.0, inputs.per_call(inputs.n)
        for name in cfg.corruptions:
            x = probe.x.to(probe.model.device)
            x = x if name != "frost" or texture_side(h, w) <= SMALL_FROST else _shrunk(x, h, w)
            scale = h * w / (x.shape[-2] * x.shape[-1])

            def run(images: torch.Tensor, name: str = name) -> Callable[[], object]:
                gen = torch.Generator(images.device).manual_seed(0)
                return lambda: corrupt(images, name, 3, gen, preset=cfg.preset)

            probe.timed(("corrupt", name, x[:m].shape), run(x[:m]))  # set-up: textures, kernels, tables
            few = probe.timed(("corrupt again", name, x[:m].shape), run(x[:m]))
            cost = CallCost(0.0, few / m)
            if few < FAST_CALL_S and len(x) > m:  # a fast device: a call's fixed cost matters, fit it
                cost = CallCost.fit(m, few, len(x), probe.timed(("corrupt again", name, x.shape), run(x)))
            per_image += scale * (cost.call / max(call, 1) + cost.image)
        images = inputs.n * len(cfg.severities) + len(cfg.severities)
        setup = frost_setup(h, w, probe) if "frost" in cfg.corruptions and texture_side(h, w) > SMALL_FROST else 0.0
        panels = len(cfg.corruptions) * (len(cfg.severities) + 1)
        work = Work(per_image * images + setup, f"{len(cfg.corruptions) * images:,} corrupted images")
        return work + probe.figures(grids=[panels], charts=[1])

    def _corrupt(self, batch: Split, name: str, severity: int, ctx: CheckContext) -> torch.Tensor:
        """The corrupted images; each image's random draws come from its own stream (seed, corruption, severity, id)."""
        streams = ctx.streams(batch.ids, self.name, name, severity, device=ctx.device)
        x, size = batch.x, ctx.batch_size
        parts = [
            corrupt(
                x[i : i + size].to(ctx.device),
                name,
                severity,
                streams.subset(slice(i, i + size)),
                preset=self.config.preset,
            )
            for i in range(0, len(x), size)
        ]
        return torch.cat(parts)

    def measure(self, model: AuditedModel, batch: Split, ctx: CheckContext) -> CheckOutput:
        cfg = self.config
        y = batch.y
        names = list(cfg.corruptions)
        # each image lends one severity-5 corruption to the shared artifact, chosen by a hash of its id
        lend = np.array([names[zlib.crc32(str(i).encode()) % len(names)] for i in batch.ids])
        rec: dict[str, object] = {"sample": batch.ids, "label": y.numpy()}
        rec["clean"] = (model.logits(batch.x, ctx.batch_size).argmax(dim=1) == y).numpy()
        lent = torch.zeros_like(batch.x)
        for name in names:
            for severity in cfg.severities:
                xc = self._corrupt(batch, name, severity, ctx)
                rec[column(name, severity)] = (model.logits(xc, ctx.batch_size).argmax(dim=1) == y).numpy()
                if severity == 5:
                    mask = torch.from_numpy(lend == name)
                    lent[mask] = xc.cpu()[mask]
        artifacts = Artifacts()
        if 5 in cfg.severities and cfg.artifact_size:
            rec["severity5_corruption"] = lend
            artifacts.put(CORRUPTED_IMAGES, lent)
        return CheckOutput(samples=pd.DataFrame(rec), artifacts=artifacts)

    def summarize(self, samples: pd.DataFrame, artifacts: Artifacts, data: AuditData, ctx: CheckContext) -> CheckOutput:
        cfg = self.config
        n = len(samples)
        rows = [rate("clean_accuracy", int(samples["clean"].sum()), n)]
        per: dict[str, float] = {}
        for name in cfg.corruptions:
            accs = []
            for severity in cfg.severities:
                k = int(samples[column(name, severity)].sum())
                rows.append(rate("accuracy", k, n, corruption=name, severity=severity))
                accs.append(k / n if n else math.nan)
            per[name] = float(np.mean(accs))
            rows.append(value("corruption_accuracy", per[name], n, corruption=name))
        for variant, group in (("benchmark", BENCHMARK), ("held-out", HELD_OUT), ("all", CORRUPTIONS)):
            present = [per[c] for c in group if c in per]
            if present:
                rows.append(
                    value(
                        "mean_corruption_accuracy",
                        float(np.mean(present)),
                        n,
                        variant=variant,
                        corruptions=len(present),
                    )
                )
        out = CheckOutput(rows=rows)
        if ctx.baseline is not None:
            rows += self._versus_baseline(samples, ctx.baseline, out)
        out.figures["examples"] = self._examples(data, ctx)
        out.figures["accuracy"] = self._heatmap(samples)
        if CORRUPTED_IMAGES in artifacts and len(artifacts[CORRUPTED_IMAGES]):
            images = artifacts[CORRUPTED_IMAGES]
            if len(images) > cfg.artifact_size:
                images = images[torch.linspace(0, len(images) - 1, cfg.artifact_size).round().long()]
            out.artifacts.put(CORRUPTED_IMAGES, images)
        return out

    def _versus_baseline(self, samples: pd.DataFrame, baseline: pd.DataFrame, out: CheckOutput) -> list[dict]:
        """CE_c = sum_s E_{s,c} / sum_s E^base_{s,c}; relative CE_c = sum_s (E_{s,c} - E_clean) /
        sum_s (E^base_{s,c} - E^base_clean); mCE and relative mCE average them over the 15 benchmark
        corruptions (Hendrycks & Dietterich 2019, section 3)."""
        base = baseline[baseline["check"] == self.name] if "check" in baseline else baseline.iloc[0:0]
        clean_row = base[base["metric"] == "clean_accuracy"]
        acc = base[base["metric"] == "accuracy"]
        if clean_row.empty or acc.empty or "corruption" not in acc or "severity" not in acc:
            out.warnings.append("baseline report has no corruptions results; corruption error and mCE are not computed")
            return []
        base_name = str(base["model"].iloc[0]) if "model" in base else "baseline"
        base_err = {(str(r["corruption"]), int(float(r["severity"]))): 1 - float(r["value"]) for _, r in acc.iterrows()}
        base_clean = 1 - float(clean_row["value"].iloc[0])
        n = len(samples)
        clean_err = 1 - float(samples["clean"].mean())
        rows, ce, rel = [], {}, {}
        for name in self.config.corruptions:
            sev = [s for s in self.config.severities if (name, s) in base_err]
            if not sev:
                out.warnings.append(f"baseline report has no '{name}' results; its corruption error is not computed")
                continue
            err = [1 - float(samples[column(name, s)].mean()) for s in sev]
            b = [base_err[(name, s)] for s in sev]
            ce[name] = sum(err) / sum(b) if sum(b) > 0 else math.nan
            drop = sum(b) - len(sev) * base_clean
            rel[name] = (sum(err) - len(sev) * clean_err) / drop if drop > 0 else math.nan
            if not math.isfinite(rel[name]):
                out.warnings.append(f"baseline's accuracy does not drop under '{name}'; its relative CE is undefined")
            rows.append(value("corruption_error", ce[name], n, corruption=name, baseline=base_name))
            rows.append(value("relative_corruption_error", rel[name], n, corruption=name, baseline=base_name))
        for metric, table in (("mce", ce), ("relative_mce", rel)):
            vals = [table[c] for c in BENCHMARK if c in table and math.isfinite(table[c])]
            if vals:
                rows.append(
                    value(
                        metric, float(np.mean(vals)), n, variant="benchmark", baseline=base_name, corruptions=len(vals)
                    )
                )
        return rows

    def _examples(self, data: AuditData, ctx: CheckContext) -> bytes:
        """One example image per corruption (rows) at each severity (columns), the clean image first."""
        x = data.eval.x[:1]
        images, titles = [], []
        for name in self.config.corruptions:
            images.append(x[0])
            titles.append(name)
            for severity in self.config.severities:
                gen = ctx.generator(self.name, "figure", name, severity)
                images.append(corrupt(x, name, severity, gen, preset=self.config.preset)[0])
                titles.append(f"severity {severity}")
        return image_grid(
            torch.stack(images),
            titles,
            ncols=len(self.config.severities) + 1,
            scale=1.1,
            suptitle="Corruptions of one evaluation image (clean image first)",
        )

    def _heatmap(self, samples: pd.DataFrame) -> bytes:
        import matplotlib.pyplot as plt

        names, sev = list(self.config.corruptions), list(self.config.severities)
        grid = np.array([[samples[column(c, s)].mean() for s in sev] for c in names])
        fig, ax = plt.subplots(figsize=(2.6 + 0.6 * len(sev), 1.2 + 0.3 * len(names)), layout="constrained")
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(sev)), [str(s) for s in sev])
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_xlabel("severity")
        for i in range(len(names)):
            for j in range(len(sev)):
                ax.text(
                    j,
                    i,
                    f"{grid[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="w" if grid[i, j] < 0.6 else "k",
                )
        fig.colorbar(im, ax=ax, label="accuracy")
        return figure_png(fig)

    def headline(self, table: pd.DataFrame) -> Headline | None:
        rows = table[table["metric"] == "mean_corruption_accuracy"]
        for variant in ("benchmark", "all"):
            pick = rows[rows["variant"] == variant] if "variant" in rows else rows
            if len(pick):
                return Headline.from_row(pick.iloc[0], "mean corruption accuracy", "higher")
        return None

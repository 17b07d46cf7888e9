"""``spatial``: translation jaggedness (Azulay & Weiss 2019) and the worst-of-grid rotation and
translation attack (Engstrom et al. 2019)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ...artifacts import ArtifactKey, Artifacts
from ...checks import AuditData, CheckContext, CheckOutput, Headline, SampleCheck, register
from ...data import Split
from ...estimate import CostInputs, Passes, Probe, Work
from ...methods.shifts.spatial import diagonal_shift, rotate_translate, worst_of
from ...models import AuditedModel
from ...options import Rule, option
from ...results.plots import figure_png, image_grid
from ...results.schema import rate, value

CURVES = ArtifactKey("spatial/jaggedness-curves", torch.Tensor, "per-image accuracy curves for the summary figure")


@register
class SpatialCheck(SampleCheck):
    name = "spatial"
    family = "natural shifts"
    title = "Shifts and rotations"
    description = (
        "Jaggedness: each image is moved diagonally one pixel at a time on a black canvas and we count how often "
        "the top-1 class changes between neighbouring positions (P(top-1 change)) and how much the probability of "
        "the unshifted image's top class moves (mean absolute change); a shift-invariant model scores 0. "
        "Grid attack: accuracy when, for every image, the worst of a grid of rotations and translations is chosen, "
        "and the worst of 10 random ones; a large drop from clean accuracy means small natural motions break the model."
    )
    reference = (
        "Azulay & Weiss, Why do deep convolutional networks generalize so poorly to small image transformations? "
        "JMLR 2019; Engstrom, Tran, Tsipras, Schmidt & Madry, Exploring the landscape of spatial robustness, ICML 2019."
    )
    version = "2"

    @dataclass
    class Config:
        jaggedness: bool = option(True, "run the jaggedness measurement")
        max_shift: int | None = option(
            None, "largest diagonal shift; auto: 1/8 of the image side", range=">= 1", unit="pixels"
        )
        grid: bool = option(True, "run the spatial attack")
        max_angle: float = option(30.0, "largest rotation", range="[0, 180]", unit="degrees")
        n_angles: int = option(31, "rotations in the grid (1 = none)", range=">= 1")
        max_translation: float | None = option(
            None, "largest translation; auto: 3 px per 32", range=">= 0", unit="pixels"
        )
        n_translations: int = option(5, "translations per axis (1 = none)", range=">= 1")
        random_trials: int = option(10, "transforms of the worst-of-random attack (0: off)", range=">= 0")
        round_size: int = option(4096, "images x transforms per early-stop round", range=">= 1")
        examples: int = option(8, "images in the figures", range=">= 0", unit="images")

        rules = (
            Rule(
                "grid",
                "must be true when jaggedness is false (enable at least one)",
                lambda c: bool(c.jaggedness or c.grid),
            ),
        )

    def shift_range(self, h: int, w: int) -> int:
        """Largest diagonal shift for jaggedness: ``max_shift`` or 1/8 of the smaller side (4 px at 32)."""
        return int(self.config.max_shift) if self.config.max_shift is not None else max(1, round(min(h, w) / 8))

    def translation_range(self, h: int, w: int) -> float:
        """Largest translation of the grid: ``max_translation`` or 3 px per 32 (Engstrom's CIFAR setting)."""
        return float(self.config.max_translation) if self.config.max_translation is not None else 3 * min(h, w) / 32

    def grids(self, h: int, w: int) -> dict[str, torch.Tensor]:
        """(T, 3) transform lists (angle, dx, dy): translation-only, rotation-only, the rest of the grid."""
        cfg = self.config
        t_max = self.translation_range(h, w)
        angles = torch.linspace(-cfg.max_angle, cfg.max_angle, cfg.n_angles) if cfg.n_angles > 1 else torch.zeros(1)
        shifts = torch.linspace(-t_max, t_max, cfg.n_translations) if cfg.n_translations > 1 else torch.zeros(1)
        full = torch.cartesian_prod(angles, shifts, shifts)
        trans = torch.cartesian_prod(torch.zeros(1), shifts, shifts)
        rot = torch.cartesian_prod(angles, torch.zeros(1), torch.zeros(1))

        def non_identity(p: torch.Tensor) -> torch.Tensor:
            return p[p.abs().sum(dim=1) > 0]

        trans, rot = non_identity(trans), non_identity(rot)
        done = torch.cat([trans, rot])
        rest = full[[not bool((done == row).all(dim=1).any()) for row in full]] if len(done) else full
        rest = non_identity(rest)
        # most extreme first: an image breaks, and leaves the search, sooner
        severity = rest[:, 0].abs() / max(cfg.max_angle, 1e-9) + rest[:, 1:].abs().sum(dim=1) / max(t_max, 1e-9)
        return {"translation": trans, "rotation": rot, "rest": rest[severity.argsort(descending=True, stable=True)]}

    def estimate_passes(self, inputs: CostInputs) -> Passes:
        """Clean pass, 2s diagonal shifts, then per image the grid and random transforms until one breaks it.

        Counted: every translation, rotation and random transform, and an eighth of the rest of the grid
        (most extreme first, where an undefended model usually breaks: 11% on the demo CNN); a model no
        transform breaks costs the whole grid, given in the note."""
        cfg = self.config
        _, h, w = inputs.shape
        per_image = 1 + (2 * self.shift_range(h, w) if cfg.jaggedness else 0)
        if not cfg.grid:
            return Passes(inputs.n * per_image)
        grids = self.grids(h, w)  # searched on correctly classified images only
        searched = len(grids["translation"]) + len(grids["rotation"]) + cfg.random_trials
        whole = inputs.n * per_image + inputs.correct * (searched + len(grids["rest"]))
        typical = inputs.n * per_image + inputs.correct * (searched + math.ceil(len(grids["rest"]) / 8))
        note = f"up to {whole:,} forward if no transform breaks an image"
        return Passes(typical, note=note, batch=inputs.batch_size)

    def estimate_work(self, inputs: CostInputs, probe: Probe) -> Work:
        """Transforming the images, timed on the calibration images (one rotation and translation each)
        and scaled to the transformed passes, and the figures: the jaggedness curves and broken examples."""
        cfg, m = self.config, len(probe.x)
        params = torch.tensor([[cfg.max_angle, 1.0, -1.0]]).repeat(m, 1)
        x = probe.x.to(probe.model.device)
        per_image = probe.timed(("rotate", x.shape), lambda: rotate_translate(x, params.to(x.device))) / m
        moved = self.estimate_passes(inputs).forward - inputs.n
        grids = [2 * min(cfg.examples, inputs.correct)] if cfg.grid and cfg.examples else []
        work = Work(per_image * moved, f"{moved:,} transformed images")
        return work + probe.figures(grids=grids, charts=[1] * cfg.jaggedness)

    def measure(self, model: AuditedModel, batch: Split, ctx: CheckContext) -> CheckOutput:
        cfg = self.config
        n, _, h, w = batch.x.shape
        x, y = batch.x, batch.y
        rec: dict[str, object] = {"sample": batch.ids, "label": y.numpy()}
        artifacts = Artifacts()
        logits = model.logits(x, ctx.batch_size)
        clean = logits.argmax(dim=1) == y
        rec["clean_correct"] = clean.numpy()
        if cfg.jaggedness:
            curves, changes = self._jaggedness(model, x, logits, ctx, self.shift_range(h, w))
            rec["jag_pairs"] = np.full(n, curves.shape[1] - 1)
            rec["jag_changes"] = changes.numpy()
            rec["jag_abs_change"] = (curves[:, 1:] - curves[:, :-1]).abs().sum(dim=1).numpy()
            artifacts.put(CURVES, curves)
        if cfg.grid:
            rec.update(self._grid(model, x, y, clean, ctx, h, w, batch.ids))
        return CheckOutput(samples=pd.DataFrame(rec), artifacts=artifacts)

    def _jaggedness(
        self, model: AuditedModel, x: torch.Tensor, logits: torch.Tensor, ctx: CheckContext, s: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, 2s+1) probability of the unshifted top class at shifts -s..s, and top-1 changes per image."""

        def probs(z: torch.Tensor) -> torch.Tensor:
            return z.clamp(0, 1) if model.outputs_probabilities else z.softmax(dim=1)

        top0 = logits.argmax(dim=1)
        curves, tops = [], []
        for shift in range(-s, s + 1):
            z = logits if shift == 0 else model.logits(diagonal_shift(x, shift), ctx.batch_size)
            curves.append(probs(z).gather(1, top0[:, None]).squeeze(1))
            tops.append(z.argmax(dim=1))
        top = torch.stack(tops, dim=1)
        return torch.stack(curves, dim=1), (top[:, 1:] != top[:, :-1]).sum(dim=1)

    def _grid(
        self,
        model: AuditedModel,
        x: torch.Tensor,
        y: torch.Tensor,
        clean: torch.Tensor,
        ctx: CheckContext,
        h: int,
        w: int,
        ids: list[str],
    ) -> dict[str, np.ndarray]:
        cfg = self.config
        n = len(x)
        grids = self.grids(h, w)
        out: dict[str, np.ndarray] = {}
        evals = torch.zeros(n, dtype=torch.long)
        ok = clean.clone()
        found = torch.full((n, 3), math.nan)
        found_pred = torch.full((n,), -1, dtype=torch.long)
        for key in ("translation", "rotation"):
            params = grids[key]
            broken, first, spent, pred = worst_of(model, x, y, params.expand(n, -1, -1), clean, ctx, cfg.round_size)
            evals += spent
            out[f"{key}_correct"] = (clean & ~broken).numpy()
            new = broken & ok
            found[new] = params[first[new]]
            found_pred[new] = pred[new]
            ok &= ~broken
        params = grids["rest"]
        broken, first, spent, pred = worst_of(model, x, y, params.expand(n, -1, -1), ok, ctx, cfg.round_size)
        evals += spent
        found[broken] = params[first[broken]]
        found_pred[broken] = pred[broken]
        ok &= ~broken
        out["grid_correct"] = ok.numpy()
        out["grid_evals"] = evals.numpy()
        out["break_angle"], out["break_dx"], out["break_dy"] = (found[:, i].numpy() for i in range(3))
        out["break_pred"] = found_pred.numpy()
        if cfg.random_trials:
            t_max = self.translation_range(h, w)
            u = ctx.streams(ids, self.name, "random").uniform((cfg.random_trials, 3), -1.0, 1.0)
            params = u * torch.tensor([cfg.max_angle, t_max, t_max])
            broken, _, spent, _ = worst_of(model, x, y, params, clean, ctx, cfg.round_size)
            out["random_correct"] = (clean & ~broken).numpy()
            out["random_evals"] = spent.numpy()
        return out

    def summarize(self, samples: pd.DataFrame, artifacts: Artifacts, data: AuditData, ctx: CheckContext) -> CheckOutput:
        cfg = self.config
        n = len(samples)
        h, w = data.eval.x.shape[-2:]
        rows = [rate("accuracy", int(samples["clean_correct"].sum()), n, transform="none")]
        figures: dict[str, bytes] = {}
        if cfg.jaggedness and "jag_changes" in samples:
            s = self.shift_range(h, w)
            variant = f"diagonal shifts -{s}..{s} px, black canvas"
            rows += self._jag_rows(samples, None, variant)
            for k, cls in enumerate(data.classes):
                part = samples[samples["label"] == k]
                if len(part):
                    rows += self._jag_rows(part, cls, variant)
            if CURVES in artifacts and len(artifacts[CURVES]):
                figures["jaggedness"] = self._curve_figure(samples, artifacts[CURVES], s)
        if cfg.grid and "grid_correct" in samples:
            t_max = self.translation_range(h, w)
            variant = f"rotation +-{cfg.max_angle:g} deg x{cfg.n_angles}, translation +-{t_max:.3g} px x{cfg.n_translations}x{cfg.n_translations}"
            rows.append(
                rate("accuracy", int(samples["translation_correct"].sum()), n, transform="translation", variant=variant)
            )
            rows.append(
                rate("accuracy", int(samples["rotation_correct"].sum()), n, transform="rotation", variant=variant)
            )
            rows.append(rate("accuracy", int(samples["grid_correct"].sum()), n, transform="grid", variant=variant))
            rows.append(
                value("transforms_per_image", float(samples["grid_evals"].mean()), n, transform="grid", variant=variant)
            )
            if "random_correct" in samples:
                rows.append(
                    rate(
                        "accuracy",
                        int(samples["random_correct"].sum()),
                        n,
                        transform=f"random-{cfg.random_trials}",
                        variant=variant,
                    )
                )
            if cfg.examples:
                fig = self._grid_figure(samples, data)
                if fig is not None:
                    figures["grid-examples"] = fig
        return CheckOutput(rows=rows, figures=figures)

    @staticmethod
    def _jag_rows(part: pd.DataFrame, cls: str | None, variant: str) -> list[dict]:
        params = {"transform": "diagonal-shift", "variant": variant}
        if cls is not None:
            params["class"] = cls
        pairs = int(part["jag_pairs"].sum())
        rows = [
            rate("top1_change", int(part["jag_changes"].sum()), pairs, **params),
            value(
                "mean_abs_change", float(part["jag_abs_change"].sum()) / pairs if pairs else math.nan, pairs, **params
            ),
        ]
        if cls is None:
            rows.append(rate("images_changed", int((part["jag_changes"] > 0).sum()), len(part), **params))
        return rows

    def _curve_figure(self, samples: pd.DataFrame, curves: torch.Tensor, s: int) -> bytes:
        import matplotlib.pyplot as plt

        order = np.argsort(-samples["jag_abs_change"].to_numpy(), kind="stable")[: max(1, self.config.examples)]
        fig, ax = plt.subplots(figsize=(5, 3), layout="constrained")
        shifts = np.arange(-s, s + 1)
        for i in order:
            ax.plot(shifts, curves[i].numpy(), marker=".", lw=1)
        ax.set_xlabel("diagonal shift (pixels)")
        ax.set_ylabel("P(unshifted top class)")
        ax.set_ylim(0, 1.02)
        ax.set_title("Most jagged images", fontsize=9)
        return figure_png(fig)

    def _grid_figure(self, samples: pd.DataFrame, data: AuditData) -> bytes | None:
        broken = samples[samples["clean_correct"] & ~samples["grid_correct"]].head(self.config.examples)
        if broken.empty:
            return None
        position = {sid: i for i, sid in enumerate(data.eval.ids)}
        idx = torch.tensor([position[sid] for sid in broken["sample"]])
        params = torch.tensor(broken[["break_angle", "break_dx", "break_dy"]].to_numpy(), dtype=torch.float32)
        originals = data.eval.x[idx]
        moved = rotate_translate(originals, params)
        images = torch.stack([originals, moved], dim=1).flatten(0, 1)
        titles = []
        for (_, r), (a, dx, dy) in zip(broken.iterrows(), params.tolist(), strict=False):
            titles.append(f"{data.classes[int(r['label'])]}")
            titles.append(f"-> {data.classes[int(r['break_pred'])]}\n{a:+.0f}deg ({dx:+.1f},{dy:+.1f})")
        return image_grid(
            images,
            titles,
            ncols=min(8, len(images)),
            suptitle="Worst-of-grid transforms that break correct predictions",
        )

    def headline(self, table: pd.DataFrame) -> Headline | None:
        if "transform" in table:
            row = table[(table["metric"] == "accuracy") & (table["transform"] == "grid")]
            if len(row):
                return Headline.from_row(row.iloc[0], "worst-of-grid accuracy", "higher")
        row = table[table["metric"] == "top1_change"]
        if "class" in table:
            row = row[row["class"].isna()]
        return Headline.from_row(row.iloc[0], "P(top-1 change) per 1-px shift", "lower") if len(row) else None

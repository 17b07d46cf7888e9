"""``patch``: a universal targeted adversarial patch against random-noise and real-object controls.

Brown, Mané, Roy, Abadi & Gilmer (2017), "Adversarial Patch": train a patch on training images
by expectation over placements (one per evaluated area by default), then paste it on held-out
images at that area.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

import pandas as pd
import torch

from ...errors import InvalidInputError
from ...estimate import CostInputs, Passes, Probe, Work
from ...methods.patch.evaluate import noise_patch, patched_predictions, real_object_patch
from ...methods.patch.figures import examples_figure, patches_figure
from ...methods.patch.geometry import SHAPES, patch_side, sample_placements
from ...methods.patch.targets import TargetSpec, choose_targets, parse_targets, run_pilots
from ...methods.patch.train import PatchTraining, TrainedPatch, train_area_patches
from ...models import AuditedModel
from ...options import option
from ...results.schema import rate, value
from .. import AuditData, Check, CheckContext, CheckOutput, Headline, register

MIN_PATCH_PIXELS = 2.0
VARIANTS = ("patch", "noise", "real")


@dataclass
class PatchConfig:
    """Options of ``[checks.patch]``."""

    target: TargetSpec = option(
        "vulnerable",
        'class name, class index, list of them, "all", "vulnerable" or "hardest" (pilots); '
        "names win over indices and rules",
    )
    vulnerable_targets: int = option(
        3, 'with "vulnerable": how many of the most vulnerable classes get the full patch', range=">= 1"
    )
    areas: list[float] = option(
        [0.02, 0.05, 0.10, 0.15, 0.25], "patch areas", range="(0, 1)", unit="fraction of the image", nonempty=True
    )
    shapes: list[str] = option(
        ["square", "circle"], "masks; one patch is trained per shape", choices=SHAPES, nonempty=True
    )
    max_rotation: float = option(22.5, "rotation range (+-)", range="[0, 180]", unit="degrees")
    scale_jitter: float = option(0.15, "relative area jitter during training", range="[0, 1)")
    train_images: int = option(1000, "training images (of other classes) per patch", range=">= 1", unit="images")
    epochs: int = option(8, "passes over them (per patch)", range=">= 1")
    batch_size: int = option(64, "images per optimisation step", range=">= 1", unit="images")
    lr: float = option(0.05, "Adam step size", range="> 0", unit="pixel units")
    per_area: bool = option(
        True, "one patch per area, trained at that area (false: one multi-scale patch for all areas)"
    )
    pilot_classes: int = option(10, 'candidate classes piloted by "vulnerable" and "hardest"', range=">= 1")
    pilot_images: int = option(
        256, "training images per pilot patch (and as many held out)", range=">= 1", unit="images"
    )
    pilot_epochs: int = option(2, "pilot training passes", range=">= 1")
    examples: int = option(6, "held-out images in the patched-examples figure", range=">= 0", unit="images")


def check_image_size(areas: list[float], shapes: list[str], height: int, width: int) -> None:
    """Every patch must fit inside the image and the smallest must span at least ``MIN_PATCH_PIXELS``."""
    for shape in shapes:
        small, large = patch_side(min(areas), shape, height, width), patch_side(max(areas), shape, height, width)
        if small < MIN_PATCH_PIXELS:
            raise InvalidInputError(
                f"{height}x{width} images are too small for a {shape} patch of area {min(areas):g} "
                f"({small:.1f} px across, need {MIN_PATCH_PIXELS:g}); use larger patch areas"
            )
        if large > min(height, width):
            raise InvalidInputError(
                f"a {shape} patch of area {max(areas):g} ({large:.1f} px across) does not fit in {height}x{width} images; "
                "use smaller patch areas"
            )


@register
class PatchCheck(Check):
    name = "patch"
    family = "adversarial patches"
    title = "Adversarial patch"
    description = (
        "A universal patch trained on training images to turn any image into the target class, pasted at a random "
        "place, rotation and size on held-out images. Targeted success is the share of non-target images then "
        "classified as the target; read it against the random-noise and real-object controls at the same area "
        "and placements, which show what merely covering part of the image does."
    )
    reference = (
        "Brown, Mané, Roy, Abadi & Gilmer (2017), Adversarial Patch, arXiv:1712.09665; "
        "Athalye et al. (2018), expectation over transformation."
    )
    version = "3"
    needs_train = True
    reads_train = True
    Config = PatchConfig

    def estimate_passes(self, inputs: CostInputs) -> Passes:
        """Pilot patches when the target is chosen automatically, then per shape and target: training
        (a gradient pass per training image and epoch, per area), the real-object control and the
        evaluation of three patches at every area on every evaluation image."""
        cfg, k, m = self.config, inputs.num_classes, inputs.n_train
        others = m - m // max(k, 1)
        rule = cfg.target if isinstance(cfg.target, str) else ""
        targets = {"vulnerable": cfg.vulnerable_targets, "hardest": 1, "all": k}.get(rule, 1)
        if isinstance(cfg.target, list):
            targets = len(cfg.target)
        total = Passes(inputs.n)
        if rule in ("vulnerable", "hardest"):
            fit = min(cfg.pilot_images, max(1, others // 2))
            held = min(cfg.pilot_images, max(others - fit, 1))
            pilots = min(cfg.pilot_classes, k)
            total += Passes(m) + Passes(
                pilots * (fit * cfg.pilot_epochs + held * len(cfg.areas)), pilots * fit * cfg.pilot_epochs
            )
        areas = len(cfg.areas)
        train = min(cfg.train_images, others) * cfg.epochs * (areas if cfg.per_area else 1)
        per_target = Passes(train, train, batch=cfg.batch_size) + Passes(
            areas * (min(512, m // max(k, 1)) + 3 * inputs.n)
        )
        for _ in range(targets * len(cfg.shapes)):
            total += per_target
        return total

    def estimate_work(self, inputs: CostInputs, probe: Probe) -> Work:
        """Per target and shape, the figure of the patches (one per area) and of patched held-out images."""
        cfg, areas = self.config, len(self.config.areas)
        targets = len(cfg.target) if isinstance(cfg.target, list) else {"all": inputs.num_classes}.get(cfg.target, 1)
        grids = [areas, cfg.examples * areas] if cfg.examples else [areas]
        return probe.figures(grids=grids * targets * len(cfg.shapes))

    def run(self, model: AuditedModel, data: AuditData, ctx: CheckContext) -> CheckOutput:
        cfg: PatchConfig = self.config
        if data.train is None or len(data.train) == 0:
            raise InvalidInputError(
                "the patch check trains on the training split, but the dataset has none; supply a train split"
            )
        _, channels, h, w = data.eval.x.shape
        check_image_size(cfg.areas, cfg.shapes, h, w)
        out = CheckOutput()
        if model.outputs_probabilities:
            out.warnings.append(
                "the model outputs probabilities: the patch maximises the log of the clamped target probability"
            )
        train_x, train_y = data.train.x, data.train.y
        targets = parse_targets(cfg.target, data.classes)
        if targets is None:
            targets = self._pick_targets(model, data, ctx, out)
        started = time.perf_counter()
        clean_pred = model.logits(data.eval.x, ctx.batch_size).argmax(dim=1)
        samples = []
        for shape in cfg.shapes:
            setup = self._setup(shape)
            placements = {
                a: sample_placements(
                    torch.full((len(data.eval),), a),
                    shape,
                    h,
                    w,
                    cfg.max_rotation,
                    ctx.generator("patch", "place", shape, a),
                )
                for a in cfg.areas
            }
            for target in targets:
                own = torch.nonzero(train_y == target).flatten()[:512]
                if len(own) == 0:
                    raise InvalidInputError(
                        f"the training split has no image of patch target '{data.classes[target]}' for the real-object control"
                    )
                trained, images = self._train(model, train_x, train_y, target, setup, ctx)
                patches = {}
                for area, tp in trained.items():
                    size = tp.patch.shape[-1]
                    noise = noise_patch(channels, size, ctx.generator("patch", "noise", shape, size))
                    real, real_index = real_object_patch(model, train_x[own], target, size, ctx.batch_size)
                    patches[area] = {"patch": tp.patch.cpu(), "noise": noise, "real": real, "mask": tp.mask.cpu()}
                part = self._evaluate(model, data, clean_pred, target, shape, patches, placements, ctx)
                samples.append(part)
                distinct = list({id(tp): tp for tp in trained.values()}.values())
                out.info.setdefault("training", []).append(
                    {
                        "target": data.classes[target],
                        "shape": shape,
                        "images": images,
                        "patches": len(distinct),
                        "per_area": cfg.per_area,
                        "steps": sum(tp.steps for tp in distinct),
                        "seconds": round(sum(tp.seconds for tp in distinct), 2),
                        "loss_per_epoch": {f"{a:g}": [round(v, 4) for v in tp.losses] for a, tp in trained.items()},
                        "real_object_train_id": data.train.ids[int(own[real_index])],
                    }
                )
                self._figures(out, model, data, target, shape, patches, placements, ctx)
        out.samples = pd.concat(samples, ignore_index=True)
        out.rows.extend(summary_rows(out.samples))
        out.info["seconds_train_and_eval"] = round(time.perf_counter() - started, 2)
        return out

    def _setup(self, shape: str) -> PatchTraining:
        cfg = self.config
        return PatchTraining(
            list(cfg.areas), shape, cfg.max_rotation, cfg.scale_jitter, cfg.epochs, cfg.batch_size, cfg.lr
        )

    def _train(
        self,
        model: AuditedModel,
        x: torch.Tensor,
        y: torch.Tensor,
        target: int,
        setup: PatchTraining,
        ctx: CheckContext,
    ) -> tuple[dict[float, TrainedPatch], int]:
        """The patch for each area, trained on at most ``train_images`` training images of other classes, and their number."""
        gen = ctx.generator("patch", "train", target, setup.shape)
        pool = torch.nonzero(y != target).flatten()
        pool = pool[torch.randperm(len(pool), generator=gen)][: self.config.train_images]
        if len(pool) == 0:
            raise InvalidInputError(
                "the training split has only images of the patch target; the patch needs other classes to train on"
            )
        return train_area_patches(model, x[pool], target, setup, gen, self.config.per_area), len(pool)

    def _pick_targets(self, model: AuditedModel, data: AuditData, ctx: CheckContext, out: CheckOutput) -> list[int]:
        """The automatic targets (``"vulnerable"`` or ``"hardest"``) from pilot patches; every pilot becomes a row."""
        cfg = self.config
        assert data.train is not None
        rule = cfg.target
        setup = PatchTraining(
            list(cfg.areas), cfg.shapes[0], cfg.max_rotation, cfg.scale_jitter, cfg.pilot_epochs, cfg.batch_size, cfg.lr
        )
        pilots = run_pilots(
            model,
            data.train.x,
            data.train.y,
            data.num_classes,
            setup,
            cfg.pilot_classes,
            cfg.pilot_images,
            ctx.generator("patch", "pilot"),
            ctx.batch_size,
            easiest=rule == "vulnerable",
        )
        chosen = choose_targets(pilots, rule, cfg.vulnerable_targets)
        selection = "most vulnerable" if rule == "vulnerable" else "hardest"
        for p in pilots:
            out.rows.append(
                rate(
                    "pilot_targeted_success",
                    p.successes,
                    p.n,
                    target=data.classes[p.target],
                    shape=cfg.shapes[0],
                    split="train",
                    selection=selection,
                    chosen=p.target in chosen,
                )
            )
        kept = f"the {len(chosen)} highest" if rule == "vulnerable" else "the lowest"
        out.info["target_rule"] = (
            f"{selection}: {kept} targeted success of a {cfg.pilot_epochs}-epoch pilot patch per candidate class "
            f"({len(pilots)} piloted; {cfg.pilot_images} training images each, evaluated on as many others over all areas)"
        )
        return chosen

    def _evaluate(
        self,
        model: AuditedModel,
        data: AuditData,
        clean_pred: torch.Tensor,
        target: int,
        shape: str,
        patches: dict[float, dict[str, torch.Tensor]],
        placements: dict,
        ctx: CheckContext,
    ) -> pd.DataFrame:
        """Per-sample predictions of every variant at every area, all under the same placements."""
        frames = []
        for area, pl in placements.items():
            for variant in VARIANTS:
                pred, prob = patched_predictions(
                    model, data.eval.x, patches[area][variant], patches[area]["mask"], pl, target, ctx.batch_size
                )
                frames.append(
                    pd.DataFrame(
                        {
                            "sample": data.eval.ids,
                            "label": data.eval.y.numpy(),
                            "clean_pred": clean_pred.numpy(),
                            "target": data.classes[target],
                            "target_index": target,
                            "shape": shape,
                            "area": area,
                            "variant": variant,
                            "pred": pred.numpy(),
                            "target_prob": prob.numpy(),
                        }
                    )
                )
        return pd.concat(frames, ignore_index=True)

    def _figures(
        self,
        out: CheckOutput,
        model: AuditedModel,
        data: AuditData,
        target: int,
        shape: str,
        patches: dict[float, dict[str, torch.Tensor]],
        placements: dict,
        ctx: CheckContext,
    ) -> None:
        key = f"{_slug(data.classes[target])}-{shape}"
        out.figures[f"patch-{key}"] = patches_figure(patches, data.classes[target], shape, self.config.per_area)
        if self.config.examples:
            others = torch.nonzero(data.eval.y != target).flatten()[: self.config.examples]
            if len(others):
                out.figures[f"patched-{key}"] = examples_figure(
                    model,
                    data.eval.x[others],
                    patches,
                    placements,
                    others,
                    data.classes,
                    target,
                    ctx.batch_size,
                )

    def headline(self, table: pd.DataFrame) -> Headline | None:
        """The highest targeted success at the area nearest 10% over the trained targets, saying how they were chosen."""
        if "variant" not in table:
            return None
        rows = table[(table["metric"] == "targeted_success") & (table["variant"] == "patch")]
        if rows.empty:
            return None
        areas = rows["area"].astype(float)
        area = float(areas.iloc[(areas - 0.10).abs().argsort().iloc[0]])
        at_area = rows[areas == area]
        row = at_area.loc[at_area["value"].idxmax()]
        return Headline.from_row(
            row,
            f"targeted patch success at {area:.0%} area, target '{row['target']}' "
            f"({target_reason(table, len(at_area['target'].unique()))})",
            "lower",
        )


def target_reason(table: pd.DataFrame, trained: int) -> str:
    """Why the headline's target was trained: an automatic rule over pilots, or the user's choice."""
    pilots = table[table["metric"] == "pilot_targeted_success"]
    if pilots.empty or "selection" not in pilots:
        return f"the highest of {trained} named target{'s' if trained > 1 else ''}"
    selection = pilots["selection"].iloc[0]
    if selection == "hardest":
        return f"the hardest to reach of {len(pilots)} piloted classes"
    return f"the highest of the {trained} most vulnerable of {len(pilots)} piloted classes"


def summary_rows(samples: pd.DataFrame) -> list[dict]:
    """Targeted and untargeted success per (target, shape, area, variant), and the smallest area reaching 90%."""
    rows = []
    for (target, shape, area, variant), part in samples.groupby(["target", "shape", "area", "variant"], sort=False):
        others = part[part["label"] != part["target_index"]]
        correct = others[others["clean_pred"] == others["label"]]
        params = {"target": target, "shape": shape, "area": float(area), "variant": variant}
        rows.append(
            rate("targeted_success", int((others["pred"] == others["target_index"]).sum()), len(others), **params)
        )
        rows.append(
            rate("untargeted_success", int((correct["pred"] != correct["label"]).sum()), len(correct), **params)
        )
    table = pd.DataFrame(rows)
    adv = table[(table["metric"] == "targeted_success") & (table["variant"] == "patch")]
    for (target, shape), part in adv.groupby(["target", "shape"], sort=False):
        reached = part[part["value"] >= 0.9]["area"]
        rows.append(
            value(
                "min_area_targeted_90",
                float(reached.min()) if len(reached) else math.nan,
                int(part["n"].iloc[0]),
                target=target,
                shape=shape,
                variant="patch",
            )
        )
    return rows


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "class"

"""``adversarial``: robust accuracy vs epsilon (L-inf, L2) and the minimal perturbation per
image, from a cascade of attacks that gradient masking cannot fool."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ...artifacts import ADVERSARIAL_EXAMPLES, ArtifactKey, Artifacts
from ...data import Split
from ...errors import InvalidInputError
from ...estimate import CostInputs, Passes, Probe, Work
from ...methods.perturbation.bpda import BPDA_MODES, find_modules
from ...methods.perturbation.cascade import TOL, CountedView
from ...methods.perturbation.diagnostics import masking_warnings, probe
from ...methods.perturbation.epsilons import default_headline, max_radius
from ...methods.perturbation.evaluate import evaluate, resolve_eps
from ...methods.perturbation.figures import curve_png, examples_png
from ...methods.perturbation.geometry import NORMS
from ...methods.perturbation.library import ATTACKS, DEFAULT_ATTACKS, DEFAULT_SURVIVOR_ATTACKS, AttackSettings
from ...methods.perturbation.summary import (
    class_rows,
    cost_rows,
    curve_rows,
    found_by_rows,
    min_norm_rows,
    robust_column,
)
from ...models import AuditedModel
from ...options import Rule, group, option
from ...results.schema import rate, value
from .. import AuditData, CheckContext, CheckOutput, Headline, SampleCheck, register

NORM_LABELS = {"linf": "L-inf", "l2": "L2"}
FOOLBOX_ATTACKS = frozenset({"fmn", "ddn", "cw", "deepfool", "fgsm", "pgd"})  # loss.backward(): weight gradients too
COST_FIELDS = ("images", "improved", "forward", "backward", "seconds")
COSTS = ArtifactKey("adversarial/costs", torch.Tensor, "per shard: one row of COST_FIELDS per (norm, attack)")


def _attack_per_norm(c: AdversarialConfig) -> bool:
    return all(any(norm in ATTACKS[a].norms for a in c.attacks) for norm in c.norms)


def _headline_in_range(c: AdversarialConfig) -> bool:
    return c.headline_eps is None or c.norms[0] != "linf" or c.headline_eps <= 1


@dataclass
class AdversarialConfig:
    """Options of ``[checks.adversarial]``; epsilons in pixel units ([0, 1] data range)."""

    norms: list[str] = option(
        ["linf", "l2"], "norms to attack; the first is the headline's", choices=NORMS, nonempty=True
    )
    eps_linf: list[float] | None = option(
        None,
        "L-inf grid; auto: grayscale [0, .025, .05, .1, .15, .2, .25, .3], colour [0, 1, 2, 4, 6, 8, 12, 16]/255",
        range="[0, 1]",
        unit="pixel units",
        nonempty=True,
    )
    eps_l2: list[float] | None = option(
        None,
        "L2 grid; auto: grayscale [0, .5, 1, 1.5, 2, 2.5, 3, 4], colour [0, .1, .25, .5, .75, 1, 1.5, 2] "
        "scaled by sqrt(H*W/1024) above 32x32",
        range=">= 0",
        unit="pixel units",
        nonempty=True,
    )
    headline_eps: float | None = option(
        None,
        "epsilon (in the first norm) of the per-class rows and the saved examples, added to the grid; auto: "
        "grayscale L-inf 0.3 (Madry et al.'s MNIST threat model), colour 8/255",
        range=">= 0",
        unit="pixel units",
    )
    attacks: list[str] = option(list(DEFAULT_ATTACKS), "the cascade, in order", choices=ATTACKS, nonempty=True)
    survivor_attacks: list[str] = option(
        list(DEFAULT_SURVIVOR_ATTACKS),
        "fixed-epsilon attacks that only start on images surviving the largest epsilon; [] lets every attack start "
        "from each image's own level (thorough, costly)",
        choices=ATTACKS,
    )
    attack: AttackSettings = group(AttackSettings, "iteration budgets of the attacks")
    bpda: str = option(
        "auto",
        "auto: BPDA and Square on every robust image when masking is detected; on: always; off: never",
        choices=BPDA_MODES,
    )
    bpda_modules: list[str] = option(
        [],
        "preprocessing submodules whose backward pass is the identity (implies BPDA; a name the model lacks "
        "is an error)",
    )
    unbounded_images: int = option(
        32,
        "about this many images of the evaluation sample get the unbounded-budget diagnostic, each picked at "
        "random by its own stream (seed and sample id), whatever the shards",
        range=">= 0",
        unit="images",
    )
    masking_threshold: float = option(
        0.02, "share above which a masking symptom becomes a warning", range="[0, 1)", unit="share"
    )
    examples_per_class: int = option(2, "examples per class in the figure", range=">= 0", unit="images")
    max_examples: int = option(500, "cap per shard on the adversarial/examples artifact", range=">= 0", unit="images")

    rules = (
        Rule("attacks", "must include an attack for each norm in {norms}", _attack_per_norm),
        Rule(
            "survivor_attacks",
            "must list fixed-epsilon attacks only (minimal-norm attacks run on every input)",
            lambda c: not any(ATTACKS[a].minimal for a in c.survivor_attacks),
        ),
        Rule("bpda_modules", "must be empty when bpda is 'off'", lambda c: c.bpda != "off" or not c.bpda_modules),
        Rule(
            "headline_eps", "must be at most 1 when the first norm is linf (pixels are in [0, 1])", _headline_in_range
        ),
    )

    def grids(self, shape: tuple[int, int, int]) -> tuple[dict[str, tuple[float, ...]], tuple[str, float]]:
        """Epsilon grid per norm for images of ``shape``, with the headline (norm, eps) added to its grid."""
        given = {"linf": self.eps_linf, "l2": self.eps_l2}
        grids = resolve_eps(self.norms, {n: given[n] for n in self.norms}, shape)
        norm = self.norms[0]
        eps = float(self.headline_eps) if self.headline_eps is not None else default_headline(norm, shape)
        if eps > max_radius(norm, shape):
            raise InvalidInputError(
                f"checks.adversarial: headline_eps {eps:g} exceeds the {norm} data range {max_radius(norm, shape):.4g}"
            )
        grids[norm] = tuple(sorted(set(grids[norm]) | {eps}))
        return grids, (norm, eps)

    def cost_order(self) -> list[tuple[str, str]]:
        return [(n, a) for n in self.norms for a in dict.fromkeys(self.attacks) if n in ATTACKS[a].norms]


@register
class AdversarialCheck(SampleCheck):
    name = "adversarial"
    family = "imperceptible perturbations"
    title = "Adversarial perturbations (L-inf, L2)"
    description = (
        "How small a change of the pixels flips the model's decision. For every image a cascade of attacks "
        "(FMN/DDN minimal-norm, APGD with cross-entropy and targeted DLR losses, and on images that survive the largest "
        "epsilon a long APGD-DLR run and the black-box Square attack) finds the smallest adversarial perturbation; "
        "robust accuracy at an epsilon is the share of images "
        "with none inside that ball, a worst case over all attacks. Lower curves mean a more fragile model; "
        "gradient-masking warnings mean the white-box numbers alone could not be trusted."
    )
    reference = (
        "Szegedy et al. 2013; Goodfellow et al. 2014 (FGSM); Madry et al. 2017 (PGD); Carlini & Wagner 2017; "
        "Moosavi-Dezfooli et al. 2016 (DeepFool); Rony et al. 2019 (DDN); Pintor et al. 2021 (FMN); "
        "Croce & Hein 2020 (APGD, AutoAttack); Andriushchenko et al. 2020 (Square); Athalye et al. 2018 (obfuscated gradients)"
    )
    version = "2"
    provides = (ADVERSARIAL_EXAMPLES,)
    Config = AdversarialConfig

    def preflight(self, model: AuditedModel, data: AuditData) -> None:
        find_modules(model, self.config.bpda_modules)

    def estimate_passes(self, inputs: CostInputs) -> Passes:
        """Per norm, each attack on every correctly classified image (the others are adversarial as they
        are), assuming none is robust at the largest epsilon: then the fixed-epsilon attacks run one
        level below each image's minimal norm, and the survivor attacks (only on images robust at the
        largest epsilon) do not run. The attacks' calls hold a shard's correctly classified images (a
        model call per step, however few), and foolbox's attacks also compute the weights' gradients."""
        cfg, n, attacked = self.config, inputs.n, inputs.correct
        s = cfg.attack
        grids, _ = cfg.grids(inputs.shape)
        k = inputs.num_classes
        grad = {  # gradient passes per image of one run
            "fmn": s.fmn_steps,
            "ddn": s.ddn_steps,
            "cw": s.cw_binary_steps * s.cw_steps,
            "deepfool": s.deepfool_steps * min(10, k),
            "apgd-ce": s.apgd_steps + 1,
            "apgd-dlr": s.apgd_dlr_steps + 1,
            "apgd-t": min(s.apgd_targets, k - 1) * (s.apgd_target_steps + 1),
            "fgsm": 1,
            "pgd": s.pgd_steps,
        }
        call = inputs.per_call(attacked)
        total = Passes(n)
        if cfg.bpda != "off":
            total += Passes(2 + min(attacked, inputs.batch_size), 2 + min(attacked, inputs.batch_size), batch=call)
        survivors, skipped = set(cfg.survivor_attacks), []
        for norm, name in cfg.cost_order():
            if name in survivors:
                skipped.append(f"{name} ({norm})")
                continue
            levels = len([e for e in grids[norm] if e > 0]) if ATTACKS[name].every_eps else 1
            passes = grad.get(name, 0) * levels * attacked
            extra = attacked * levels + (attacked if name == "apgd-t" else 0)
            total += Passes(passes + extra, passes, batch=call, weights=name in FOOLBOX_ATTACKS)
        unbounded = min(cfg.unbounded_images, attacked)
        total += Passes(3 * attacked, 2 * attacked, batch=call)
        total += Passes(unbounded * 11, unbounded * 11, batch=inputs.per_call(unbounded))
        note = f"survivor attacks {', '.join(skipped)} run only on images robust at the largest eps" if skipped else ""
        return Passes(total.forward, total.backward, note=note, batch=call, parts=total.terms())

    def estimate_work(self, inputs: CostInputs, probe: Probe) -> Work:
        """The robust-accuracy curves and, from the correctly classified images, the examples figure (a
        clean / perturbation / adversarial triple for up to ``examples_per_class`` images of a class)."""
        triples = min(inputs.correct, self.config.examples_per_class * inputs.num_classes)
        return probe.figures(grids=[3 * triples] if triples else [], charts=[len(self.config.norms)])

    def measure(self, model: AuditedModel, batch: Split, ctx: CheckContext) -> CheckOutput:
        cfg: AdversarialConfig = self.config
        grids, (h_norm, h_eps) = cfg.grids(batch.shape)
        if model.num_classes < 2:
            raise InvalidInputError("checks.adversarial needs a model with at least 2 classes")
        streams = ctx.streams(batch.ids, self.name)
        x = batch.x.to(ctx.device)
        result = evaluate(
            model,
            x,
            batch.y,
            cfg.norms,
            grids,
            cfg.attacks,
            cfg.attack,
            ctx.seed,
            ctx.batch_size,
            cfg.survivor_attacks,
            cfg.bpda,
            cfg.bpda_modules,
            cfg.masking_threshold,
            streams.keys,
        )
        view = CountedView(model, result.probabilities)
        # about unbounded_images of the whole evaluation sample, each picked by its own stream
        share = cfg.unbounded_images / max(ctx.eval_size or len(batch), 1)
        unbounded = streams.fork("unbounded").uniform(()) < share
        masking = probe(view, x, result.labels.to(x.device), result.correct, ctx.batch_size, unbounded)
        probs = result.clean_logits.softmax(1)
        samples = pd.DataFrame(
            {
                "sample": batch.ids,
                "label": result.labels.numpy(),
                "pred": probs.argmax(1).numpy(),
                "correct": result.correct.numpy(),
                "confidence": probs.amax(1).numpy(),
            }
        )
        for norm, res in result.norms.items():
            adv_probs = res.adv_logits.softmax(1)
            samples[f"min_{norm}"] = res.min_norm.double().numpy()
            samples[f"by_{norm}"] = res.found_by
            samples[f"adv_pred_{norm}"] = adv_probs.argmax(1).numpy()
            samples[f"adv_confidence_{norm}"] = adv_probs.amax(1).numpy()
            for e, flags in zip(res.eps, res.robust.T, strict=False):
                samples[robust_column(norm, e)] = flags.numpy()
        samples["zero_grad_ce"] = masking.zero_grad_ce.numpy()
        samples["zero_grad_margin"] = masking.zero_grad_margin.numpy()
        samples["unbounded_robust"] = masking.unbounded_robust.numpy()
        samples["nondeterminism"] = masking.nondeterminism.numpy()
        samples["probabilities"] = result.probabilities
        samples["bpda"] = result.masking.bpda
        samples["bpda_ops"] = ",".join(result.masking.ops)
        samples["square_everywhere"] = result.masking.square_everywhere
        head = result.norms[h_norm]
        chosen = np.flatnonzero((result.correct & (head.min_norm <= h_eps + TOL)).numpy())[: cfg.max_examples]
        samples["example"] = np.isin(np.arange(len(samples)), chosen)
        costs = {(c.norm, c.attack): c for res in result.norms.values() for c in res.costs}
        table = torch.tensor(
            [[float(getattr(costs[key], f)) for f in COST_FIELDS] for key in cfg.cost_order()], dtype=torch.float64
        )
        artifacts = Artifacts(
            {ADVERSARIAL_EXAMPLES: head.adversarial[torch.from_numpy(chosen)].contiguous(), COSTS: table}
        )
        return CheckOutput(samples=samples, artifacts=artifacts)

    def summarize(self, samples: pd.DataFrame, artifacts: Artifacts, data: AuditData, ctx: CheckContext) -> CheckOutput:
        cfg: AdversarialConfig = self.config
        grids, headline = cfg.grids(data.eval.shape)
        chain = "+".join(dict.fromkeys(cfg.attacks))
        rows: list[dict] = []
        for norm in cfg.norms:
            applicable = [a for a in dict.fromkeys(cfg.attacks) if norm in ATTACKS[a].norms]
            rows += curve_rows(samples, norm, list(grids[norm]), "+".join(applicable))
            rows += min_norm_rows(samples, norm)
            rows += found_by_rows(samples, norm, applicable)
        rows += class_rows(samples, data.classes, *headline)
        costs = self._costs(artifacts.get(COSTS))
        rows += cost_rows(costs)
        diag_rows, warnings = self._diagnostics(samples)
        rows += diag_rows
        for w in warnings:
            ctx.warn(w)
        figures = {"curve": curve_png(pd.DataFrame([r for r in rows if r["metric"] == "robust_accuracy"]))}
        examples = self._examples_figure(samples, artifacts.get(ADVERSARIAL_EXAMPLES), data, headline)
        if examples is not None:
            figures["examples"] = examples
        info = {
            "attacks": chain,
            "papers": {a: ATTACKS[a].paper for a in dict.fromkeys(cfg.attacks)},
            "eps": {n: list(g) for n, g in grids.items()},
            "headline": {"norm": headline[0], "eps": headline[1]},
            "costs": costs,
        }
        kept = artifacts.only([ADVERSARIAL_EXAMPLES])
        return CheckOutput(rows=rows, figures=figures, artifacts=kept, info=info)

    def headline(self, table: pd.DataFrame) -> Headline | None:
        """The median smallest flipping perturbation (L-inf if measured, else L2), with its order-statistic CI.

        Unlike robust accuracy at one fixed radius, which is 0 for nearly every undefended model at the usual
        MNIST radius, it keeps ranking models however fragile they are; it is also the radius at which robust
        accuracy halves."""
        rows = table[table["metric"] == "min_perturbation_median"]
        if "norm" not in rows or not len(rows):
            return None
        norm = "linf" if (rows["norm"] == "linf").any() else str(rows["norm"].iloc[0])
        row = rows[rows["norm"] == norm].iloc[0]
        return Headline.from_row(
            row,
            f"median smallest {NORM_LABELS.get(norm, norm)} perturbation that flips a correct prediction",
            "higher",
            "value",
        )

    def _costs(self, table: torch.Tensor | None) -> list[dict]:
        order = self.config.cost_order()
        if table is None or table.numel() == 0:
            return []
        total = table.view(-1, len(order), len(COST_FIELDS)).sum(0)
        return [
            {
                "norm": n,
                "attack": a,
                **{
                    f: (float(v) if f == "seconds" else int(v)) for f, v in zip(COST_FIELDS, row.tolist(), strict=False)
                },
            }
            for (n, a), row in zip(order, total, strict=False)
        ]

    def _diagnostics(self, samples: pd.DataFrame) -> tuple[list[dict], list[str]]:
        cfg: AdversarialConfig = self.config
        correct = samples[samples["correct"].astype(bool)]
        rows, shares = [], {}
        for col, metric in (
            ("zero_grad_ce", "masking_zero_gradient_ce"),
            ("zero_grad_margin", "masking_zero_gradient_margin"),
            ("unbounded_robust", "masking_unbounded_robust"),
        ):
            tested = correct[col].dropna()
            extra = {"norm": "linf", "eps": 1.0} if col == "unbounded_robust" else {}
            rows.append(rate(metric, float(tested.sum()), len(tested), **extra))
            shares[col] = float(tested.mean()) if len(tested) else 0.0
        blackbox = {}
        scorebased = [a for a in dict.fromkeys(cfg.attacks) if not ATTACKS[a].whitebox]
        for norm in cfg.norms if scorebased else []:
            hits = int(correct[f"by_{norm}"].isin(scorebased).sum())
            rows.append(rate("masking_blackbox_gain", hits, len(correct), norm=norm, attack="+".join(scorebased)))
            blackbox[norm] = hits / len(correct) if len(correct) else 0.0
        probabilities = bool(samples["probabilities"].astype(bool).any()) if len(samples) else False
        drift = float(correct["nondeterminism"].max()) if len(correct) else 0.0
        drift = 0.0 if math.isnan(drift) else drift
        rows.append(value("masking_probability_outputs", float(probabilities), len(samples)))
        rows.append(value("masking_nondeterminism", drift, len(correct)))
        rows += self._response_rows(samples, correct)
        ops = tuple(
            sorted(
                {
                    op
                    for cell in samples.get("bpda_ops", pd.Series(dtype=str)).dropna()
                    for op in str(cell).split(",")
                    if op
                }
            )
        )
        warnings = masking_warnings(
            shares["zero_grad_ce"],
            shares["zero_grad_margin"],
            shares["unbounded_robust"],
            blackbox,
            probabilities,
            drift,
            cfg.masking_threshold,
            ops,
        )
        return rows, warnings

    def _response_rows(self, samples: pd.DataFrame, correct: pd.DataFrame) -> list[dict]:
        """How the cascade answered masking: shares of images attacked through BPDA and by Square on
        every robust image, and per norm the share whose smallest adversarial a BPDA gradient attack found."""
        if "bpda" not in samples.columns:
            return []
        rows = [
            rate("masking_bpda", int(samples["bpda"].astype(bool).sum()), len(samples)),
            rate("masking_square_everywhere", int(samples["square_everywhere"].astype(bool).sum()), len(samples)),
        ]
        for norm in self.config.norms:
            whitebox = [
                a for a in dict.fromkeys(self.config.attacks) if ATTACKS[a].whitebox and norm in ATTACKS[a].norms
            ]
            hits = int((correct["bpda"].astype(bool) & correct[f"by_{norm}"].isin(whitebox)).sum())
            rows.append(rate("found_by_bpda", hits, len(correct), norm=norm, attack="+".join(whitebox)))
        return rows

    def _examples_figure(
        self, samples: pd.DataFrame, adversarial: torch.Tensor | None, data: AuditData, headline: tuple[str, float]
    ) -> bytes | None:
        per_class = self.config.examples_per_class
        if adversarial is None or not len(adversarial) or per_class == 0:
            return None
        flagged = samples[samples["example"].astype(bool)].reset_index(drop=True)
        if len(flagged) != len(adversarial):
            return None
        picked = flagged.groupby("label", sort=True).head(per_class).sort_values("label")
        position = {sid: i for i, sid in enumerate(data.eval.ids)}
        clean = data.eval.x[[position[s] for s in picked["sample"]]]
        norm, eps = headline
        titles = [
            (
                f"{data.classes[int(r.label)]} ({r.confidence:.0%})",
                f"x10, {norm} {getattr(r, f'min_{norm}'):.3g}",
                f"-> {data.classes[int(getattr(r, f'adv_pred_{norm}'))]} ({getattr(r, f'adv_confidence_{norm}'):.0%})",
            )
            for r in picked.itertuples()
        ]
        return examples_png(
            clean,
            adversarial[torch.tensor(picked.index.tolist(), dtype=torch.long)],
            titles,
            f"Smallest adversarial examples found within {norm} eps {eps:g}: clean / perturbation x10 / adversarial",
        )

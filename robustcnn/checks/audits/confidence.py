"""``confidence``: can a threshold on the model's confidence reject fooling, adversarial,
noisy and shifted inputs? (Hendrycks & Gimpel 2017; Liu et al. 2020; Shafaei et al. 2018)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ...estimate import CostInputs, Passes, Probe, Work
from ...methods.confidence import figures
from ...methods.confidence.calibration import misclassification_auroc, reliability, risk_coverage
from ...methods.confidence.metrics import detection, threshold_at_tpr
from ...methods.confidence.odtest import od_test
from ...methods.confidence.ood_sets import ARTIFACTS, SET_NAMES, OODSet, build_sets
from ...methods.confidence.scores import SCORES, confidence_scores, display_values, usable_scores
from ...methods.shifts.noise_corruptions import noise_images
from ...models import AuditedModel
from ...options import Rule, option
from ...results.schema import rate, value
from .. import AuditData, Check, CheckContext, CheckOutput, Headline, register

COVERAGES = (0.5, 0.8, 0.9, 0.95)


@dataclass
class ConfidenceConfig:
    """Options of ``[checks.confidence]``; see docs/checks/confidence.md."""

    scores: list[str] = option(list(SCORES), "scores to evaluate", choices=SCORES, nonempty=True)
    primary_score: str = option("msp", "score of the headline and the figures", choices=SCORES)
    sets: list[str] = option(list(SET_NAMES), "built-in OOD sets to evaluate", choices=SET_NAMES)
    ood: str = option("", "path or name of your own OOD dataset")
    tpr: float = option(0.95, "share of clean inputs the threshold keeps", range="[0.5, 1)", unit="share")
    noise_n: int = option(500, "images per noise set", range=">= 1", unit="images")
    noise_std: float = option(0.25, "standard deviation of the Gaussian noise", range="> 0", unit="pixel units")
    max_per_set: int = option(500, "cap on images per set", range=">= 1", unit="images")
    generate_missing: bool = option(True, "generate stand-ins for missing artifacts")
    fooling_n: int = option(50, "generated fooling images", range=">= 1", unit="images")
    fooling_steps: int = option(100, "gradient steps per generated fooling image", range=">= 1", unit="steps")
    fooling_step_size: float = option(0.01, "step size of the generated fooling images", range="> 0")
    adversarial_n: int = option(
        100, "generated APGD-CE examples (the adversarial check's attack)", range=">= 1", unit="images"
    )
    adversarial_eps: float = option(
        0.1,
        "L-inf radius of the generated APGD-CE examples (8/255 is usual for natural images)",
        range="(0, 1]",
        unit="pixel units",
    )
    adversarial_steps: int = option(10, "APGD-CE steps of the generated examples", range=">= 1", unit="steps")
    corruption_n: int = option(200, "generated corrupted images", range=">= 1", unit="images")
    ece_bins: int = option(15, "bins of the calibration error", range=">= 1", unit="bins")
    energy_temperature: float = option(1.0, "T of the energy score", range="> 0")
    odtest: bool = option(True, "run the OD-test protocol")

    rules = (
        Rule("primary_score", "must be one of scores {scores}", lambda c: c.primary_score in c.scores),
        Rule("sets", "must name an OOD set when no 'ood' dataset is given", lambda c: bool(c.sets or c.ood)),
    )


@register
class ConfidenceCheck(Check):
    name = "confidence"
    family = "audits"
    title = "Confidence thresholding"
    description = (
        "Scores every clean and bad input (noise, fooling images, adversarial examples, corruptions, your own OOD set) "
        "by the model's confidence and asks whether a threshold that keeps 95% of clean inputs rejects the bad ones. "
        "Read accepted_share: the share of bad inputs that pass the threshold (high = the threshold does not protect you); "
        "AUROC near 0.5 means confidence does not tell clean from bad. Calibration (ECE, risk-coverage) says whether "
        "confidence can be trusted on clean inputs; od_accuracy whether a threshold tuned on one bad set transfers to another."
    )
    reference = (
        "Hendrycks & Gimpel 2017 (max softmax baseline); Liu et al. 2020 (energy score); Shafaei, Schmidt & Little 2018 "
        "(OD-test); Guo et al. 2017 (ECE); Geifman & El-Yaniv 2017 (risk-coverage)."
    )
    version = "1"
    uses = tuple(ARTIFACTS.values())
    Config = ConfidenceConfig

    def estimate_passes(self, inputs: CostInputs) -> Passes:
        """The evaluation images, then each set of bad inputs scored (at most ``max_per_set``): noise,
        the artifacts of earlier checks, or stand-ins generated when those did not run."""
        cfg, n = self.config, inputs.n
        cap = cfg.max_per_set
        artifact_sizes = {
            "fooling-gradient": inputs.num_classes,
            "fooling-evolution": 2 * inputs.num_classes,
            "adversarial": n,
            "corruptions": n,
        }
        total = Passes(n)
        for name in cfg.sets:
            if name in ("gaussian-noise", "uniform-noise"):
                total += Passes(min(cfg.noise_n, cap))
            elif name in inputs.before:
                total += Passes(min(artifact_sizes[name], cap))
            elif cfg.generate_missing and name == "fooling-gradient":
                steps = cfg.fooling_steps
                total += Passes(
                    cfg.fooling_n * (steps + 1) + min(cfg.fooling_n, cap), cfg.fooling_n * steps, bound=True
                )
            elif cfg.generate_missing and name == "adversarial":
                a = min(cfg.adversarial_n, n)
                total += Passes(a * (cfg.adversarial_steps + 1) + min(a, cap), a * cfg.adversarial_steps)
            elif cfg.generate_missing and name == "corruptions":
                total += Passes(min(cfg.corruption_n, n, cap))
        if cfg.ood:
            total += Passes(cap, bound=True)
        return total

    def estimate_work(self, inputs: CostInputs, probe: Probe) -> Work:
        """Drawing the noise sets, timed on as many images as the calibration holds and scaled, and the
        figures: reliability, risk-coverage and score histograms, and the five most confident inputs of
        each bad set."""
        cfg, m = self.config, len(probe.x)
        noise = [name.split("-")[0] for name in cfg.sets if name in ("gaussian-noise", "uniform-noise")]
        drawn = sum(
            probe.timed(
                ("noise", kind, inputs.shape),
                lambda kind=kind: noise_images(
                    kind, m, inputs.shape, 0.5, cfg.noise_std, torch.Generator().manual_seed(0)
                ),
            )
            for kind in noise
        )
        built = [n for n in cfg.sets if n.endswith("-noise") or n in inputs.before or cfg.generate_missing]
        sets = built + [cfg.ood] * bool(cfg.ood)
        charts = [1, 1] + ([len(sets)] if sets else [])  # reliability, risk-coverage, a histogram per set
        return Work(drawn * cfg.noise_n / m, f"{len(noise) * cfg.noise_n:,} noise images") + probe.figures(
            grids=[5 * len(sets)] if sets else [], charts=charts
        )

    def run(self, model: AuditedModel, data: AuditData, ctx: CheckContext) -> CheckOutput:
        cfg: ConfidenceConfig = self.config
        names, dropped = usable_scores(cfg.scores, model.outputs_probabilities)
        primary = cfg.primary_score
        if dropped:
            ctx.warn(
                f"the model outputs probabilities; scores are computed from log-probabilities and "
                f"{', '.join(dropped)} are not meaningful (energy is constant, max log-probability repeats MSP): left out"
            )
        if not names:
            names = ["msp"]
        if primary not in names:
            ctx.warn(f"primary_score '{primary}' is not available for this model; using '{names[0]}'")
            primary = names[0]

        def score(x: torch.Tensor) -> dict[str, np.ndarray]:
            return confidence_scores(
                model.logits(x, ctx.batch_size), names, model.outputs_probabilities, cfg.energy_temperature
            )

        clean_out = model.logits(data.eval.x, ctx.batch_size)
        clean = confidence_scores(clean_out, names, model.outputs_probabilities, cfg.energy_temperature)
        correct = (clean_out.argmax(dim=1) == data.eval.y).numpy()
        sets, notes = build_sets(model, data, cfg, ctx)
        for note in notes:
            ctx.warn(note)
        set_scores = {s.name: score(s.images) for s in sets}

        rows = self._detection_rows(names, primary, clean, sets, set_scores, cfg.tpr)
        if cfg.odtest and sets:
            rows += self._odtest_rows(names, clean, set_scores, ctx.seed)
        rows += self._calibration_rows(names, clean, correct, cfg.ece_bins)

        out = CheckOutput(rows=rows, samples=_samples(data, names, clean, correct, sets, set_scores))
        out.info["sets"] = {s.name: s.source for s in sets}
        out.info["scores"] = names
        out.figures = self._figures(names, primary, clean, correct, sets, set_scores, cfg)
        return out

    @staticmethod
    def _detection_rows(names, primary, clean, sets: list[OODSet], set_scores, tpr: float) -> list[dict]:
        rows: list[dict] = []
        worst: tuple[float, str, int, int, str] | None = None
        for name in names:
            rows.append(
                value(
                    "mean_score",
                    float(np.mean(display_values(name, clean[name]))),
                    len(clean[name]),
                    score=name,
                    ood="clean",
                )
            )
            for s in sets:
                ood = set_scores[s.name][name]
                det = detection(clean[name], ood, tpr)
                p = {"score": name, "ood": s.name, "source": s.source}
                rows += [
                    value("auroc", det.auroc, det.n_clean + det.n_ood, **p),
                    value("aupr_in", det.aupr_in, det.n_clean + det.n_ood, **p),
                    value("aupr_out", det.aupr_out, det.n_clean + det.n_ood, **p),
                    value("fpr_at_tpr", det.fpr_at_tpr, det.n_ood, tpr=tpr, **p),
                    rate("accepted_share", det.accepted, det.n_ood, tpr=tpr, **p),
                    value("mean_score", float(np.mean(display_values(name, ood))), det.n_ood, **p),
                ]
                if name == primary and (worst is None or det.accepted / det.n_ood > worst[0]):
                    worst = (det.accepted / det.n_ood, s.name, det.accepted, det.n_ood, s.source)
            threshold = threshold_at_tpr(clean[name], tpr)
            rows.append(
                value("threshold", float(display_values(name, threshold)), len(clean[name]), score=name, tpr=tpr)
            )
            rows.append(
                rate("clean_accepted", int(np.sum(clean[name] >= threshold)), len(clean[name]), score=name, tpr=tpr)
            )
        if worst is not None:
            rows.append(
                rate("worst_accepted_share", worst[2], worst[3], score=primary, ood=worst[1], tpr=tpr, source=worst[4])
            )
        return rows

    @staticmethod
    def _odtest_rows(names, clean, set_scores, seed: int) -> list[dict]:
        rows: list[dict] = []
        for name in names:
            results = od_test(clean[name], {k: v[name] for k, v in set_scores.items()}, seed)
            for r in results:
                rows.append(value("od_accuracy", r.accuracy, r.n_test, score=name, ood=r.test_on, fit_on=r.fit_on))
            cross = [r for r in results if r.fit_on != r.test_on]
            if cross:
                low = min(cross, key=lambda r: r.accuracy)
                rows.append(
                    value("od_accuracy_worst", low.accuracy, low.n_test, score=name, ood=low.test_on, fit_on=low.fit_on)
                )
        return rows

    @staticmethod
    def _calibration_rows(names, clean, correct: np.ndarray, bins: int) -> list[dict]:
        n = len(correct)
        rows: list[dict] = []
        if "msp" in names:
            rows.append(value("ece", reliability(np.exp(clean["msp"]), correct, bins).ece, n, score="msp", bins=bins))
        for name in names:
            rc = risk_coverage(clean[name], correct)
            rows.append(value("aurc", rc.aurc, n, score=name))
            rows.append(value("excess_aurc", rc.excess_aurc, n, score=name))
            for c in COVERAGES:
                acc, kept = rc.accuracy_at(c)
                rows.append(rate("selective_accuracy", round(acc * kept), kept, score=name, coverage=c))
            rows.append(value("misclassification_auroc", misclassification_auroc(clean[name], correct), n, score=name))
        return rows

    @staticmethod
    def _figures(
        names, primary, clean, correct, sets: list[OODSet], set_scores, cfg: ConfidenceConfig
    ) -> dict[str, bytes]:
        figs: dict[str, bytes] = {}
        if "msp" in names:
            figs["reliability"] = figures.reliability_diagram(reliability(np.exp(clean["msp"]), correct, cfg.ece_bins))
        figs["risk_coverage"] = figures.risk_coverage_plot(
            {name: risk_coverage(clean[name], correct) for name in names}
        )
        if sets:
            threshold = threshold_at_tpr(clean[primary], cfg.tpr)
            per_set = {s.name: set_scores[s.name][primary] for s in sets}
            figs["score_histograms"] = figures.score_histograms(primary, clean[primary], per_set, threshold, cfg.tpr)
            figs["most_confident_bad_inputs"] = figures.accepted_examples(
                {s.name: s.images for s in sets}, per_set, primary, threshold
            )
        return figs

    def headline(self, table: pd.DataFrame) -> Headline | None:
        row = table[table["metric"] == "worst_accepted_share"]
        if not len(row):
            return None
        label = f"bad inputs accepted at {row['tpr'].iloc[0]:.0%} clean TPR (worst set: {row['ood'].iloc[0]})"
        return Headline.from_row(row.iloc[0], label, "lower")


def _samples(data: AuditData, names, clean, correct, sets: list[OODSet], set_scores) -> pd.DataFrame:
    """One record per scored input: clean images by id, OOD inputs as ``<set>-<i>``; scores in display units."""
    frames = [
        pd.DataFrame(
            {
                "sample": data.eval.ids,
                "set": "clean",
                "correct": correct,
                **{n: display_values(n, clean[n]) for n in names},
            }
        )
    ]
    for s in sets:
        k = len(s.images)
        frames.append(
            pd.DataFrame(
                {
                    "sample": [f"{s.name}-{i}" for i in range(k)],
                    "set": s.name,
                    "correct": None,
                    **{n: display_values(n, set_scores[s.name][n]) for n in names},
                }
            )
        )
    return pd.concat(frames, ignore_index=True)

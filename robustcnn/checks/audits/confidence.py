"""``confidence``: can a threshold on the model's confidence reject fooling, adversarial,
noisy and shifted inputs? (Hendrycks & Gimpel 2017; Liu et al. 2020; Shafaei et al. 2018)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ...errors import InvalidInputError
from ...methods.confidence import figures
from ...methods.confidence.calibration import misclassification_auroc, reliability, risk_coverage
from ...methods.confidence.metrics import detection, threshold_at_tpr
from ...methods.confidence.odtest import od_test
from ...methods.confidence.ood_sets import SET_NAMES, OODSet, build_sets
from ...methods.confidence.scores import SCORES, confidence_scores, display_values, usable_scores
from ...models import AuditedModel
from ...results.schema import rate, value
from .. import AuditData, Check, CheckContext, CheckOutput, Headline, register

COVERAGES = (0.5, 0.8, 0.9, 0.95)


@dataclass
class ConfidenceConfig:
    """Options of ``[checks.confidence]``; see docs/checks/confidence.md."""

    scores: list[str] = field(default_factory=lambda: list(SCORES))
    primary_score: str = "msp"
    sets: list[str] = field(default_factory=lambda: list(SET_NAMES))
    ood: str = ""
    tpr: float = 0.95
    noise_n: int = 500
    noise_std: float = 0.25
    max_per_set: int = 500
    generate_missing: bool = True
    fooling_n: int = 50
    fooling_steps: int = 100
    fooling_step_size: float = 0.01
    adversarial_n: int = 100
    adversarial_eps: float = 0.1
    adversarial_steps: int = 10
    corruption_n: int = 200
    ece_bins: int = 15
    energy_temperature: float = 1.0
    odtest: bool = True

    def validate(self) -> None:
        bad = [s for s in self.scores if s not in SCORES]
        if bad or not self.scores:
            raise InvalidInputError(
                f"confidence: unknown or empty scores {bad or self.scores}; choose from {', '.join(SCORES)}"
            )
        if self.primary_score not in self.scores:
            raise InvalidInputError(
                f"confidence: primary_score '{self.primary_score}' must be one of scores {self.scores}"
            )
        bad = [s for s in self.sets if s not in SET_NAMES]
        if bad:
            raise InvalidInputError(f"confidence: unknown sets {bad}; choose from {', '.join(SET_NAMES)}")
        if not self.sets and not self.ood:
            raise InvalidInputError("confidence: no OOD sets; list some in 'sets' or give an 'ood' dataset path")
        if not 0.5 <= self.tpr < 1.0:
            raise InvalidInputError(f"confidence: tpr must lie in [0.5, 1), got {self.tpr}")
        for key in (
            "noise_n",
            "max_per_set",
            "fooling_n",
            "fooling_steps",
            "adversarial_n",
            "adversarial_steps",
            "corruption_n",
            "ece_bins",
        ):
            if int(getattr(self, key)) < 1:
                raise InvalidInputError(f"confidence: {key} must be at least 1, got {getattr(self, key)}")
        for key in ("noise_std", "fooling_step_size", "energy_temperature"):
            if not getattr(self, key) > 0:
                raise InvalidInputError(f"confidence: {key} must be positive, got {getattr(self, key)}")
        if not 0 < self.adversarial_eps <= 1:
            raise InvalidInputError(
                f"confidence: adversarial_eps must lie in (0, 1] (pixels in [0, 1]), got {self.adversarial_eps}"
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
    order = 90
    Config = ConfidenceConfig

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

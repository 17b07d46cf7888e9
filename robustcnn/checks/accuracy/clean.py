"""``clean``: accuracy, per-class accuracy and confusion counts on unmodified evaluation images."""

from __future__ import annotations

import pandas as pd

from ...artifacts import Artifacts
from ...data import Split
from ...estimate import CostInputs, Passes, Probe, Work
from ...models import AuditedModel
from ...results.schema import rate, value
from .. import AuditData, CheckContext, CheckOutput, Headline, SampleCheck, register


@register
class CleanCheck(SampleCheck):
    name = "clean"
    family = "accuracy"
    title = "Clean accuracy"
    description = (
        "Top-1 accuracy on the unmodified evaluation images, per class, with the confusion counts. "
        "Every robustness number elsewhere is relative to this baseline."
    )
    reference = "Standard top-1 accuracy; 95% Wilson intervals."

    def measure(self, model: AuditedModel, batch: Split, ctx: CheckContext) -> CheckOutput:
        logits = model.logits(batch.x, ctx.batch_size)
        probs = logits.softmax(dim=1) if not model.outputs_probabilities else logits
        conf, pred = probs.max(dim=1)
        samples = pd.DataFrame(
            {
                "sample": batch.ids,
                "label": batch.y.numpy(),
                "pred": pred.numpy(),
                "confidence": conf.numpy(),
                "correct": (pred == batch.y).numpy(),
            }
        )
        return CheckOutput(samples=samples)

    def summarize(self, samples: pd.DataFrame, artifacts: Artifacts, data: AuditData, ctx: CheckContext) -> CheckOutput:
        rows = [rate("accuracy", int(samples["correct"].sum()), len(samples))]
        rows.append(value("mean_confidence", float(samples["confidence"].mean()), len(samples)))
        for k, cls in enumerate(data.classes):
            part = samples[samples["label"] == k]
            rows.append(rate("class_accuracy", int(part["correct"].sum()), len(part), **{"class": cls}))
        confusion = pd.crosstab(samples["label"], samples["pred"])
        for true_k, row in confusion.iterrows():
            for pred_k, count in row.items():
                if count:
                    rows.append(
                        value(
                            "confusion_count",
                            int(count),
                            None,
                            **{"class": data.classes[int(true_k)], "pred": data.classes[int(pred_k)]},
                        )
                    )
        return CheckOutput(rows=rows)

    def estimate_passes(self, inputs: CostInputs) -> Passes:
        return Passes(inputs.n)

    def estimate_work(self, inputs: CostInputs, probe: Probe) -> Work:
        """None to speak of: counting the predictions (no figure)."""
        return Work()

    def headline(self, table: pd.DataFrame) -> Headline | None:
        row = table[table["metric"] == "accuracy"]
        return Headline.from_row(row.iloc[0], "clean accuracy", "higher") if len(row) else None

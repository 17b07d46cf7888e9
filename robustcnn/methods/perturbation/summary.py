"""Turn the merged per-sample table of the adversarial check into tidy rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...results.schema import rate, value
from ...stats import quantile_with_ci
from .cascade import TOL


def robust_column(norm: str, eps: float) -> str:
    return f"robust_{norm}@{eps:g}"


def curve_rows(samples: pd.DataFrame, norm: str, grid: list[float], chain: str) -> list[dict]:
    n = len(samples)
    return [
        rate("robust_accuracy", int(samples[robust_column(norm, e)].sum()), n, norm=norm, eps=e, attack=chain)
        for e in grid
    ]


def min_norm_rows(samples: pd.DataFrame, norm: str) -> list[dict]:
    """Median and quartiles of the smallest verified adversarial perturbation over correctly classified inputs.

    An input counts as robust at ``eps`` exactly when its smallest perturbation exceeds ``eps``, so the
    median is also the radius at which robust accuracy falls to half the clean accuracy.
    """
    values = samples.loc[samples["correct"].astype(bool), f"min_{norm}"].to_numpy(float)
    rows = []
    for metric, q in (("min_perturbation_q25", 0.25), ("min_perturbation_median", 0.5), ("min_perturbation_q75", 0.75)):
        point, ci = quantile_with_ci(values, q)
        rows.append(value(metric, point, len(values), ci, norm=norm))
    rows.append(rate("unbroken", int(np.isinf(values).sum()), len(values), norm=norm))
    return rows


def found_by_rows(samples: pd.DataFrame, norm: str, attacks: list[str]) -> list[dict]:
    """Share of correctly classified inputs whose smallest adversarial each attack supplied."""
    correct = samples[samples["correct"].astype(bool)]
    by = correct[f"by_{norm}"].fillna("")
    return [rate("found_by", int((by == a).sum()), len(correct), norm=norm, attack=a) for a in attacks]


def class_rows(samples: pd.DataFrame, classes: list[str], norm: str, eps: float) -> list[dict]:
    rows = []
    for k, name in enumerate(classes):
        part = samples[samples["label"] == k]
        if not len(part):
            continue
        rows.append(
            rate(
                "class_robust_accuracy",
                int((part[f"min_{norm}"] > eps + TOL).sum()),
                len(part),
                norm=norm,
                eps=eps,
                **{"class": name},
            )
        )
        ok = part.loc[part["correct"].astype(bool), f"min_{norm}"].to_numpy(float)
        point, ci = quantile_with_ci(ok, 0.5)
        rows.append(value("class_min_perturbation_median", point, len(ok), ci, norm=norm, **{"class": name}))
    return rows


def cost_rows(costs: list[dict]) -> list[dict]:
    rows = []
    for c in costs:
        params = {"norm": c["norm"], "attack": c["attack"]}
        rows += [
            value("attack_images", c["images"], **params),
            value("attack_improved", c["improved"], **params),
            value("attack_forward_images", c["forward"], **params),
            value("attack_backward_images", c["backward"], **params),
        ]
    return rows

"""Groups from dataset attributes, and the bias measures over them (the ``groups`` check's algorithms).

``Attribute`` / ``select_attributes``: how every bias check turns dataset attributes into groups
(missing values, numeric binning, identifiers, single groups). Per-group counts through fairlearn,
equalized odds (Hardt et al. 2016) and bias amplification (Zhao et al. 2017; directional, Wang &
Russakovsky 2021).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame

from ...errors import InvalidInputError

MISSING = "missing"


@dataclass(frozen=True)
class Attribute:
    """A group attribute made categorical: ``groups(raw)`` maps raw values to group labels.

    Missing values (NaN, None, empty strings, the ImageFolder loader's ``"missing"``) form
    the group ``"missing"``. A numeric attribute with too many values is cut at ``edges``
    (quantiles of the images they were chosen on), the same edges for every split.
    """

    name: str
    edges: tuple[float, ...] | None = None

    def groups(self, raw: pd.Series) -> pd.Series:
        raw = raw.reset_index(drop=True)
        missing = raw.isna() | raw.astype(str).str.strip().isin(["", MISSING])
        if self.edges is None:
            out = raw.astype(str)
        else:
            num = pd.to_numeric(raw.where(~missing), errors="coerce")
            missing |= num.isna()
            labels = _bin_labels(self.edges)
            index = np.searchsorted(np.asarray(self.edges), num.fillna(0).to_numpy(), side="right")
            out = pd.Series([labels[k] for k in index], dtype=object)
        return out.where(~missing, MISSING).astype(str)


def _bin_labels(edges: tuple[float, ...]) -> list[str]:
    e = [f"{v:.3g}" for v in edges]
    return [f"<{e[0]}"] + [f"[{e[k]}, {e[k + 1]})" for k in range(len(e) - 1)] + [f">={e[-1]}"]


def select_attributes(
    frame: pd.DataFrame,
    requested: list[str],
    max_groups: int,
    bins: int,
    warn: Callable[[str], None],
    where: str = "evaluation",
) -> list[Attribute]:
    """The attributes of ``frame`` to analyse: ``requested`` (all columns when empty), made categorical.

    Unknown names raise. Numeric attributes with more than ``max_groups`` values are cut into
    ``bins`` quantile groups; other attributes with that many values (identifiers), and
    attributes with a single group, raise when requested by name and are skipped with a
    warning otherwise.
    """
    columns = [str(c) for c in frame.columns]
    unknown = [a for a in requested if a not in columns]
    if unknown:
        have = ", ".join(columns) if columns else "none (add metadata.csv columns or .npz attribute arrays)"
        raise InvalidInputError(
            f"attribute {', '.join(map(repr, unknown))} is not in the {where} data; its attributes: {have}"
        )
    explicit = bool(requested)
    chosen: list[Attribute] = []
    for name in requested or columns:
        raw = frame[name].reset_index(drop=True)
        attribute = Attribute(name)
        present = raw[attribute.groups(raw) != MISSING]
        distinct = present.astype(str).nunique()
        problem = None
        if distinct > max_groups:
            numbers = pd.to_numeric(present, errors="coerce")
            if numbers.notna().all():
                cuts = np.quantile(numbers.to_numpy(dtype=float), np.linspace(0, 1, bins + 1)[1:-1])
                attribute = Attribute(name, tuple(float(v) for v in np.unique(cuts)))
                warn(
                    f"attribute '{name}' is numeric with {distinct} values: cut into {len(attribute.edges) + 1} quantile groups"
                )
            else:
                problem = f"attribute '{name}' has {distinct} distinct values (max_groups = {max_groups}), too many to be groups"
        if problem is None:
            groups = attribute.groups(raw)
            if groups.nunique() < 2:
                only = groups.iloc[0] if len(groups) else "none"
                problem = f"attribute '{name}' has a single group ('{only}') in the {where} images: nothing to compare"
        if problem is not None:
            if explicit:
                raise InvalidInputError(problem + "; choose other attributes, or raise max_groups / use more images")
            warn(problem + "; skipped")
            continue
        chosen.append(attribute)
    return chosen


def group_counts(y: np.ndarray, pred: np.ndarray, groups: pd.Series, classes: list[int]) -> pd.DataFrame:
    """Per group (fairlearn MetricFrame): images, correct predictions and, per class c one-vs-rest,
    positives ``pos_c``, true positives ``tp_c``, selections ``sel_c`` and false positives ``fp_c``."""
    metrics = {"count": lambda t, p: len(t), "correct": lambda t, p: int(np.sum(t == p))}
    for c in classes:
        metrics[f"pos_{c}"] = lambda t, p, c=c: int(np.sum(t == c))
        metrics[f"tp_{c}"] = lambda t, p, c=c: int(np.sum((t == c) & (p == c)))
        metrics[f"sel_{c}"] = lambda t, p, c=c: int(np.sum(p == c))
        metrics[f"fp_{c}"] = lambda t, p, c=c: int(np.sum((t != c) & (p == c)))
    frame = MetricFrame(
        metrics=metrics, y_true=np.asarray(y), y_pred=np.asarray(pred), sensitive_features=groups.to_numpy()
    )
    return frame.by_group.astype(int)


def rate_gap(rates: pd.Series) -> float:
    defined = rates.dropna()
    return float(defined.max() - defined.min()) if len(defined) >= 2 else np.nan


def equalized_odds_difference(tpr: pd.Series, fpr: pd.Series) -> float:
    """max(TPR gap, FPR gap) between groups (Hardt et al. 2016); a group where a rate is undefined
    (no positives, or no negatives) takes no part in that rate.

    fairlearn's own function scores an undefined rate as 0, which reports a gap of 1 for a
    group without positives.
    """
    gaps = [g for g in (rate_gap(tpr), rate_gap(fpr)) if not np.isnan(g)]
    return max(gaps) if gaps else np.nan


def zhao_bias_amplification(
    train_y: np.ndarray,
    train_g: np.ndarray,
    pred: np.ndarray,
    groups: np.ndarray,
    num_classes: int,
    num_groups: int,
    reference: tuple[np.ndarray, np.ndarray] | None = None,
) -> float:
    """Zhao et al. (2017): mean over classes c of the sum over groups g with training bias
    b*(c, g) = P(g | y = c) > 1/|G| of b~(c, g) - b*(c, g), where b~(c, g) = P(g | pred = c).

    ``reference`` replaces the baseline b* (not the choice of pairs) by P(g | y = c) on other
    data, e.g. the evaluation labels when the evaluation distribution differs from training.
    Classes never predicted do not count.
    """
    train = joint_counts(train_y, train_g, num_classes, num_groups)
    b_star = _row_normalise(train)
    base = (
        b_star
        if reference is None
        else _row_normalise(joint_counts(reference[0], reference[1], num_classes, num_groups))
    )
    predicted = joint_counts(pred, groups, num_classes, num_groups)
    b_pred = _row_normalise(predicted)
    rows = predicted.sum(axis=1) > 0
    pairs = (b_star > 1.0 / num_groups) & rows[:, None] & ~np.isnan(base)
    if not rows.any():
        return np.nan
    return float(np.sum((b_pred - base)[pairs]) / rows.sum())


def directional_bias_amplification(
    train_y: np.ndarray,
    train_g: np.ndarray,
    y: np.ndarray,
    pred: np.ndarray,
    groups: np.ndarray,
    num_classes: int,
    num_groups: int,
) -> tuple[float, np.ndarray]:
    """BiasAmp A->T of Wang & Russakovsky (2021): mean over (group a, class t) of
    y_at * D_at + (1 - y_at) * (-D_at), with D_at = P(pred = t | a) - P(y = t | a) on the
    evaluation images and y_at = 1 when a and t co-occur more often than chance in training.
    Returns the value and the D matrix (groups x classes); groups absent from evaluation are left out.
    """
    train = joint_counts(train_y, train_g, num_classes, num_groups).T / max(len(train_y), 1)
    positive = train > train.sum(axis=1, keepdims=True) * train.sum(axis=0, keepdims=True)
    true_rate = _row_normalise(joint_counts(groups, y, num_groups, num_classes))
    pred_rate = _row_normalise(joint_counts(groups, pred, num_groups, num_classes))
    delta = pred_rate - true_rate
    present = ~np.isnan(delta).any(axis=1)
    if not present.any():
        return np.nan, delta
    signed = np.where(positive, delta, -delta)[present]
    return float(signed.mean()), delta


def joint_counts(a: np.ndarray, b: np.ndarray, na: int, nb: int) -> np.ndarray:
    out = np.zeros((na, nb))
    np.add.at(out, (np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)), 1)
    return out


def _row_normalise(m: np.ndarray) -> np.ndarray:
    total = m.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, m / np.where(total > 0, total, 1), np.nan)

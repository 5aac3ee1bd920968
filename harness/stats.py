"""Metrics of a trial: F1 of the positive class overall, per language, seen vs unseen languages,
the all-"yes" baseline, and bootstrap confidence intervals over evaluation rows and seeds."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score


@dataclass(frozen=True)
class Scores:
    f1: float
    precision: float
    recall: float
    rows: int
    positives: int


def binary_scores(labels: Sequence[int] | np.ndarray, predictions: Sequence[int] | np.ndarray) -> Scores:
    """Precision, recall and F1 of the positive class (0 where undefined, no warnings)."""
    labels = np.asarray(labels, dtype=int)
    predictions = np.asarray(predictions, dtype=int)
    if len(labels) == 0:
        return Scores(0.0, 0.0, 0.0, 0, 0)
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predictions, average="binary", pos_label=1, zero_division=0)
    return Scores(float(f1), float(precision), float(recall), len(labels), int(labels.sum()))


def trial_metrics(predictions: pd.DataFrame, *, seen_languages: Iterable[str]) -> dict[str, float]:
    """Every number a trial logs, from a frame with columns language, label, prediction.

    Keys: f1, precision, recall, baseline_f1 (predict "yes" everywhere), positive_rate (share
    predicted "yes"), roc_auc (from p_yes, when both labels occur), f1/<lang>,
    precision/<lang>, recall/<lang>, rows/<lang>, f1/seen, f1/unseen (pooled over the rows of
    languages present / absent in training; absent when there are no such rows).
    """
    labels = predictions["label"].to_numpy(dtype=int)
    predicted = predictions["prediction"].to_numpy(dtype=int)
    overall = binary_scores(labels, predicted)
    metrics = {"f1": overall.f1, "precision": overall.precision, "recall": overall.recall,
               "baseline_f1": binary_scores(labels, np.ones_like(labels)).f1,
               "rows": float(overall.rows),
               "positive_rate": float(predicted.mean()) if len(predicted) else float("nan")}
    if "p_yes" in predictions and len(set(labels)) == 2:
        metrics["roc_auc"] = float(roc_auc_score(labels, predictions["p_yes"].to_numpy(dtype=float)))
    languages = predictions["language"].to_numpy()
    for language in sorted(set(languages)):
        mask = languages == language
        scores = binary_scores(labels[mask], predicted[mask])
        metrics[f"f1/{language}"] = scores.f1
        metrics[f"precision/{language}"] = scores.precision
        metrics[f"recall/{language}"] = scores.recall
        metrics[f"rows/{language}"] = float(scores.rows)
    seen = np.isin(languages, list(seen_languages))
    for name, mask in (("seen", seen), ("unseen", ~seen)):
        if mask.any():
            metrics[f"f1/{name}"] = binary_scores(labels[mask], predicted[mask]).f1
    return metrics


def percentile_interval(samples: np.ndarray, *, level: float = 0.95) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def seed_interval(values: Sequence[float], *, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean across seeds (degenerate for one seed)."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean
    half = scipy_stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return mean - float(half), mean + float(half)

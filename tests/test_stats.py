import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from harness.stats import binary_scores, bootstrap_f1, pooled_bootstrap_interval, trial_metrics


def test_binary_scores_match_sklearn_and_handle_empty():
    labels = [1, 1, 0, 0, 1]
    predictions = [1, 0, 1, 0, 1]
    assert binary_scores(labels, predictions).f1 == f1_score(labels, predictions)
    assert binary_scores([], []).f1 == 0.0
    assert binary_scores([0, 0], [0, 0]).f1 == 0.0


def test_trial_metrics_per_language_seen_unseen_and_baseline():
    frame = pd.DataFrame({"language": ["en", "en", "de", "de"], "label": [1, 0, 1, 1],
                          "prediction": [1, 0, 0, 1]})
    metrics = trial_metrics(frame, seen_languages=["en"])
    assert metrics["f1/en"] == 1.0 and metrics["f1/de"] == f1_score([1, 1], [0, 1])
    assert metrics["f1/seen"] == 1.0 and metrics["f1/unseen"] == metrics["f1/de"]
    assert metrics["baseline_f1"] == f1_score([1, 0, 1, 1], [1, 1, 1, 1])
    assert metrics["rows/de"] == 2


def test_bootstrap_is_deterministic_and_centred():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    predictions = np.where(rng.random(400) < 0.8, labels, 1 - labels)
    samples = bootstrap_f1(labels, predictions, resamples=500, seed=1)
    assert np.array_equal(samples, bootstrap_f1(labels, predictions, resamples=500, seed=1))
    assert abs(samples.mean() - f1_score(labels, predictions)) < 0.01
    mean, low, high = pooled_bootstrap_interval([pd.DataFrame({"label": labels, "prediction": predictions})])
    assert low < mean < high and high - low < 0.15

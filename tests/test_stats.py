import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from harness.paired import pooled_f1
from harness.stats import binary_scores, trial_metrics


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


def test_cell_interval_is_deterministic_centred_and_shared_across_seeds():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    predictions = np.where(rng.random(400) < 0.8, labels, 1 - labels)
    table = pd.DataFrame({"id": np.arange(400), "label": labels, "prediction": predictions})
    cell = pooled_f1([table], seed=1)
    assert cell == pooled_f1([table], seed=1) and cell.seed_sd is None
    assert cell.f1 == f1_score(labels, predictions) and cell.low < cell.f1 < cell.high
    assert cell.high - cell.low < 0.15
    # three identical seeds: the same rows resampled once, so the same interval, and sd 0
    three = pooled_f1([table] * 3, seed=1)
    assert three.low == pytest.approx(cell.low) and three.high == pytest.approx(cell.high)
    assert three.seed_sd == 0

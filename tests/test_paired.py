import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats
from sklearn.metrics import f1_score

from harness.paired import (
    UNTESTED,
    Aligned,
    align,
    holm,
    mcnemar_test,
    paired_f1_difference,
    pooled_over_seeds,
    verdict,
)


def _pair(labels, pred_a, pred_b, **extra) -> Aligned:
    ids = [f"r{i}" for i in range(len(labels))]
    a = pd.DataFrame({"id": ids, "label": labels, "pred": pred_a, **extra})
    b = pd.DataFrame({"id": ids, "label": labels, "pred": pred_b, **extra})
    return align(a, b)


def _noisy(labels: np.ndarray, accuracy: float, rng: np.random.Generator) -> np.ndarray:
    return np.where(rng.random(len(labels)) < accuracy, labels, 1 - labels)


# Joint probabilities of (label, pred_a, pred_b), for a population with a known F1 difference.
CELLS = [(y, pa, pb) for y in (0, 1) for pa in (0, 1) for pb in (0, 1)]
PROBS = np.array([0.6 * p for p in (0.80, 0.05, 0.10, 0.05)] + [0.4 * p for p in (0.15, 0.15, 0.10, 0.60)])


def _population_f1(system: int) -> float:
    tp = sum(p for (y, *preds), p in zip(CELLS, PROBS, strict=True) if y == 1 and preds[system] == 1)
    fp = sum(p for (y, *preds), p in zip(CELLS, PROBS, strict=True) if y == 0 and preds[system] == 1)
    fn = sum(p for (y, *preds), p in zip(CELLS, PROBS, strict=True) if y == 1 and preds[system] == 0)
    return 2 * tp / (2 * tp + fp + fn)


def _sample(n: int, rng: np.random.Generator) -> Aligned:
    rows = np.array(CELLS)[rng.choice(len(CELLS), size=n, p=PROBS)]
    return _pair(rows[:, 0], rows[:, 1], rows[:, 2])


def test_difference_matches_sklearn_including_undefined_f1():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300)
    pred_a, pred_b = _noisy(labels, 0.7, rng), _noisy(labels, 0.8, rng)
    result = paired_f1_difference(_pair(labels, pred_a, pred_b), n_resamples=200)
    expected = f1_score(labels, pred_b) - f1_score(labels, pred_a)
    assert result.difference == pytest.approx(expected, abs=1e-12)
    assert result.f1_a == pytest.approx(f1_score(labels, pred_a), abs=1e-12)
    assert result.n == 300 and result.n_groups is None
    # F1 undefined for a (no positive labels, no positive predictions) is 0, as sklearn gives.
    zeros = np.zeros(10, dtype=int)
    some = np.r_[np.ones(3, dtype=int), np.zeros(7, dtype=int)]
    degenerate = paired_f1_difference(_pair(zeros, zeros, some), n_resamples=50)
    assert degenerate.f1_a == f1_score(zeros, zeros, zero_division=0) == 0.0
    assert degenerate.difference == 0.0
    no_positive_predictions = paired_f1_difference(_pair(some, zeros, some), n_resamples=50)
    assert no_positive_predictions.f1_a == f1_score(some, zeros, zero_division=0) == 0.0
    assert no_positive_predictions.difference == 1.0


def test_interval_covers_the_population_difference():
    truth = _population_f1(1) - _population_f1(0)
    rng = np.random.default_rng(0)
    covered = 0
    datasets = 200
    for i in range(datasets):
        result = paired_f1_difference(_sample(300, rng), n_resamples=1000, seed=i)
        covered += result.low <= truth <= result.high
    # Nominal 95%; a binomial count of 200 falls under 90% or above 99.5% with tiny probability.
    assert 0.90 <= covered / datasets <= 0.995


def test_identical_systems_give_zero_interval_and_no_difference():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    pred = _noisy(labels, 0.8, rng)
    groups = np.repeat(np.arange(20), 10)
    for option in (None, groups):
        result = paired_f1_difference(_pair(labels, pred, pred), n_resamples=300, groups=option)
        assert (result.difference, result.low, result.high, result.p_value) == (0.0, 0.0, 0.0, 1.0)
        assert verdict(result) == "no detectable difference"
    same = mcnemar_test(_pair(labels, pred, pred))
    assert (same.b01, same.b10, same.p_value, same.mid_p) == (0, 0, 1.0, 1.0)


def test_clearly_better_system_helps_and_reversed_hurts():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 500)
    weak, strong = _noisy(labels, 0.7, rng), _noisy(labels, 0.95, rng)
    better = paired_f1_difference(_pair(labels, weak, strong), n_resamples=1000)
    assert better.low > 0 and better.p_value < 0.01 and verdict(better) == "helps"
    worse = paired_f1_difference(_pair(labels, strong, weak), n_resamples=1000)
    assert worse.high < 0 and verdict(worse) == "hurts"
    # A non-significant adjusted p overrides an interval that excludes 0.
    assert verdict(better, p_adjusted=0.2) == "no detectable difference"
    assert verdict(better, p_adjusted=0.01) == "helps"
    assert mcnemar_test(_pair(labels, weak, strong)).p_value < 1e-6


def test_cluster_bootstrap_is_wider_when_errors_are_correlated_within_groups():
    rng = np.random.default_rng(4)
    n_groups, size = 40, 10
    group = np.repeat(np.arange(n_groups), size)
    labels = rng.integers(0, 2, n_groups * size)
    # Whether each system is right depends on the query (group), not on the row.
    right_a = np.repeat(rng.random(n_groups) < 0.7, size)
    right_b = np.repeat(rng.random(n_groups) < 0.8, size)
    aligned = _pair(labels, np.where(right_a, labels, 1 - labels), np.where(right_b, labels, 1 - labels),
                    group=group)
    rows = paired_f1_difference(aligned, n_resamples=1000)
    clusters = paired_f1_difference(aligned, n_resamples=1000, groups="group")
    assert clusters.n_groups == n_groups and clusters.method != rows.method
    assert clusters.difference == rows.difference
    assert clusters.high - clusters.low > 1.5 * (rows.high - rows.low)
    explicit = paired_f1_difference(aligned, n_resamples=1000, groups=group)
    assert explicit == clusters


def test_mcnemar_matches_hand_computed_binomial_and_chi2():
    # 7 rows only b gets right, 1 only a gets right, 12 both right, 5 both wrong.
    labels = np.ones(25, dtype=int)
    pred_a = np.r_[np.zeros(7), np.ones(1), np.ones(12), np.zeros(5)].astype(int)
    pred_b = np.r_[np.ones(7), np.zeros(1), np.ones(12), np.zeros(5)].astype(int)
    result = mcnemar_test(_pair(labels, pred_a, pred_b))
    assert (result.b01, result.b10, result.n, result.exact) == (7, 1, 25, True)
    # P(X <= 1) for X ~ Binomial(8, 1/2) is 9/256; two-sided 18/256; mid-p 2 * (9/256 - 8/512).
    assert result.p_value == pytest.approx(18 / 256)
    assert result.mid_p == pytest.approx(10 / 256)
    # 20 vs 10 discordant: chi2 with continuity correction (|20 - 10| - 1)^2 / 30 = 2.7, 1 df.
    labels = np.ones(40, dtype=int)
    pred_a = np.r_[np.zeros(20), np.ones(10), np.ones(10)].astype(int)
    pred_b = np.r_[np.ones(20), np.zeros(10), np.ones(10)].astype(int)
    chi2 = mcnemar_test(_pair(labels, pred_a, pred_b))
    assert not chi2.exact and chi2.statistic == pytest.approx(2.7)
    assert chi2.p_value == pytest.approx(math.erfc(math.sqrt(2.7 / 2)))


def test_holm_matches_hand_computed_values():
    adjusted = holm({"qr": 0.01, "lt": 0.04, "cot": 0.03, "icl": 0.5})
    # Sorted 0.01, 0.03, 0.04, 0.5 times 4, 3, 2, 1 = 0.04, 0.09, 0.08, 0.5; running max.
    assert list(adjusted) == ["qr", "lt", "cot", "icl"]
    assert adjusted == pytest.approx({"qr": 0.04, "lt": 0.09, "cot": 0.09, "icl": 0.5})
    assert holm({"a": 0.3, "b": 0.9}) == pytest.approx({"a": 0.6, "b": 0.9})
    assert holm({}) == {}


def test_align_joins_on_id_and_rejects_mismatches():
    a = pd.DataFrame({"id": [1, 2, 3], "label": [1, 0, 1], "pred": [1, 1, 0], "language": ["en", "de", "en"]})
    b = pd.DataFrame({"id": ["3", "1", "2"], "label": [1, 1, 0], "prediction": [1, 1, 0]})
    aligned = align(a, b)
    assert list(aligned.ids) == ["1", "2", "3"]
    assert list(aligned.pred_b) == [1, 0, 1] and list(aligned.language) == ["en", "de", "en"]
    cases = {
        "ids differ": b.assign(id=["3", "1", "4"]),
        "labels disagree": b.assign(label=[0, 1, 0]),
        "duplicate ids": b.assign(id=["3", "1", "1"]),
        "0/1 with no missing": b.assign(prediction=pd.array([1, None, 0], dtype="Int8")),
        "lacks column": b.drop(columns="label"),
    }
    with pytest.raises(ValueError, match="no rows"):
        align(a.iloc[:0], b.iloc[:0])
    for message, other in cases.items():
        with pytest.raises(ValueError, match=message) as error:
            align(a, other)
        assert "\n" not in str(error.value)


def test_pooled_over_three_seeds_gives_t_interval_and_shared_index_interval():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 300)
    pairs = [_pair(labels, _noisy(labels, 0.75, rng), _noisy(labels, 0.85, rng)) for _ in range(3)]
    pooled = pooled_over_seeds(pairs, n_resamples=1000)
    singles = [paired_f1_difference(p, n_resamples=10).difference for p in pairs]
    assert pooled.per_seed == pytest.approx(singles, abs=1e-12)
    assert pooled.difference == pytest.approx(np.mean(singles))
    half = scipy_stats.t.ppf(0.975, 2) * np.std(singles, ddof=1) / math.sqrt(3)
    assert (pooled.t_low, pooled.t_high) == pytest.approx((np.mean(singles) - half, np.mean(singles) + half))
    assert pooled.low < pooled.difference < pooled.high and pooled.permutation_p is None
    # The same resample for every seed: three copies of one seed pool to that seed's interval
    # exactly (independent resamples per seed would average into a narrower one).
    copies = pooled_over_seeds([pairs[0]] * 3, n_resamples=1000)
    single = paired_f1_difference(pairs[0], n_resamples=1000)
    assert (copies.rows_low, copies.rows_high) == (single.low, single.high)
    # Rows listed in another order in one seed change nothing.
    shuffled = rng.permutation(300)
    p = pairs[1]
    pairs[1] = Aligned(p.ids[shuffled], p.labels[shuffled], p.pred_a[shuffled], p.pred_b[shuffled])
    assert pooled_over_seeds(pairs, n_resamples=1000) == pooled
    assert verdict(pooled) in ("helps", "no detectable difference")
    assert pooled_over_seeds(pairs[:2], n_resamples=100).t_low is None


def test_combined_interval_adds_row_and_seed_variance():
    rng = np.random.default_rng(8)
    labels = rng.integers(0, 2, 400)
    # seeds that disagree a lot: the interval must widen beyond the rows-only one
    pairs = [_pair(labels, _noisy(labels, 0.8, rng), _noisy(labels, accuracy, rng))
             for accuracy in (0.78, 0.9, 0.84)]
    pooled = pooled_over_seeds(pairs, n_resamples=2000)
    boot_se = (pooled.rows_high - pooled.rows_low) / (2 * 1.96)  # about the bootstrap's sd
    seed_se2 = np.var(pooled.per_seed, ddof=1) / 3
    se = math.sqrt(boot_se**2 + seed_se2)
    df = se**4 / (seed_se2**2 / 2)
    half = scipy_stats.t.ppf(0.975, df) * se
    assert pooled.df == pytest.approx(df, rel=0.15)
    assert (pooled.high - pooled.low) / 2 == pytest.approx(half, rel=0.1)
    assert pooled.high - pooled.low > pooled.rows_high - pooled.rows_low
    # the p-value is the t test of that interval: p < 0.05 exactly when it excludes 0
    assert (pooled.p_value < 0.05) == (pooled.low > 0 or pooled.high < 0)
    # identical copies of one seed: no training variance, the rows' error alone (normal)
    copies = pooled_over_seeds([pairs[0]] * 2, n_resamples=2000)
    assert copies.df == float("inf") and copies.low == pytest.approx(
        copies.difference - 1.96 * (copies.rows_high - copies.rows_low) / 3.92, abs=0.004)


def test_one_seed_gets_no_verdict_however_large_the_difference():
    rng = np.random.default_rng(9)
    labels = rng.integers(0, 2, 500)
    pair = _pair(labels, _noisy(labels, 0.6, rng), _noisy(labels, 0.95, rng))
    single = pooled_over_seeds([pair], n_resamples=500)
    assert single.low > 0.2 and single.df is None
    assert verdict(single) == UNTESTED
    assert verdict(pooled_over_seeds([pair, pair], n_resamples=500)) == "helps"


def test_sign_flip_test_from_five_seeds():
    rng = np.random.default_rng(6)
    labels = rng.integers(0, 2, 200)
    pairs = [_pair(labels, _noisy(labels, 0.7, rng), _noisy(labels, 0.9, rng)) for _ in range(5)]
    pooled = pooled_over_seeds(pairs, n_resamples=200)
    assert all(d > 0 for d in pooled.per_seed)
    assert pooled.permutation_p == pytest.approx(2 / 32)  # the smallest value 5 seeds allow


def test_bootstrap_is_deterministic_with_a_seed():
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, 200)
    aligned = _pair(labels, _noisy(labels, 0.75, rng), _noisy(labels, 0.8, rng))
    first = paired_f1_difference(aligned, n_resamples=500, seed=11)
    assert paired_f1_difference(aligned, n_resamples=500, seed=11) == first
    other = paired_f1_difference(aligned, n_resamples=500, seed=12)
    assert (other.low, other.high) != (first.low, first.high)
    assert pooled_over_seeds([aligned] * 3, seed=11) == pooled_over_seeds([aligned] * 3, seed=11)

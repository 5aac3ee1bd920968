"""Verdicts from paired comparisons of fixed prediction sets (no MLflow, no torch)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from harness.config import parse_config
from harness.paired import align, learned_nothing, paired_f1_difference
from harness.plan import build_plan
from harness.record import TrialRecord
from harness.stats import trial_metrics
from harness.verdicts import contrasts, sentence

FINGERPRINTS = {"QC": "qc-1", "QI": "qi-1"}
ROWS = 600
LABELS = np.random.default_rng(0).integers(0, 2, ROWS)
GROUPS = np.arange(ROWS) // 3  # three rows per query


def frame(prediction: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"id": np.arange(ROWS).astype(str), "language": "en", "group": GROUPS,
                         "label": LABELS, "p_yes": prediction * 0.8 + 0.1, "prediction": prediction})


def noisy(accuracy: float, seed: int) -> np.ndarray:
    flip = np.random.default_rng(seed).random(ROWS) > accuracy
    return np.where(flip, 1 - LABELS, LABELS)


def records(config, accuracy_of, predictions_of=None):
    plan = build_plan(config, data_fingerprints=FINGERPRINTS)
    out = []
    for spec in plan.trials:
        prediction = (predictions_of or {}).get(spec.label)
        if prediction is None:
            prediction = noisy(accuracy_of[spec.label], seed=spec.seed * 100 + len(spec.label))
        predictions = frame(prediction)
        record = TrialRecord.from_spec(spec, eval_split="test", train_rows=1, eval_rows=ROWS)
        out.append(dataclasses.replace(
            record, status="FINISHED", predictions=predictions,
            metrics=trial_metrics(predictions, seen_languages=["en"]),
            degenerate=learned_nothing(predictions)))
    return plan, out


def by_name(found, task, name):
    return next(c for c in found if c.task == task and c.name == name)


def test_identical_predictions_give_zero_and_no_verdict():
    config = parse_config({"tasks": ["QC"], "seeds": [0, 1],
                           "design": {"kind": "grid", "switches": ["LT"]}})
    same = noisy(0.8, seed=1)
    plan, recs = records(config, {}, {"baseline": same, "LT": same})
    contrast = by_name(contrasts(plan, recs, models=["tiny"]), "QC", "baseline → LT")
    assert contrast.result.difference == 0 and contrast.result.low == contrast.result.high == 0
    assert contrast.verdict == "no detectable difference" and not contrast.significant
    assert "no detectable difference (Δ F1 +0.000" in sentence(contrast)


def test_one_seed_is_estimated_but_untested_and_left_out_of_holm():
    config = parse_config({"tasks": ["QC"], "design": {"kind": "grid", "switches": ["LT"]}})
    plan, recs = records(config, {"baseline": 0.7, "LT": 0.95})
    contrast = by_name(contrasts(plan, recs, models=["tiny"]), "QC", "baseline → LT")
    assert contrast.result.difference > 0.2 and contrast.result.low > 0
    assert contrast.verdict == "untested: one seed" and not contrast.significant
    assert contrast.p_holm is None and "untested with one seed" in sentence(contrast)


def test_a_real_gain_over_three_seeds_is_significant_after_holm():
    config = parse_config({"tasks": ["QC", "QI"], "seeds": [0, 1, 2],
                           "design": {"kind": "cumulative", "switches": ["LT", "HCT", "SIT"]}})
    plan, recs = records(config, {"baseline": 0.75, "LT": 0.75, "LT+HCT": 0.9, "LT+SIT": 0.9})
    found = contrasts(plan, recs, models=["tiny"])
    gain = by_name(found, "QC", "LT → LT+HCT")
    assert gain.result.n_seeds == 3 and gain.result.t_low > 0 and gain.result.low > 0
    assert gain.p_holm >= gain.result.p_value and gain.significant and gain.verdict == "helps"
    assert "HCT helps (Δ F1 +0.1" in sentence(gain)
    null = by_name(found, "QC", "baseline → LT")
    assert not null.significant
    # a component that does not apply is "n/a", not "no effect"; the same pair is listed once
    assert by_name(found, "QI", "LT → LT+HCT").note == "n/a: HCT does not apply to QI"
    names = [c.name for c in found if c.task == "QI" and c.result is not None]
    assert len(names) == len(set(names)) and "baseline → LT+SIT" in names


def test_a_trial_that_learned_nothing_is_flagged_and_gets_no_verdict():
    config = parse_config({"tasks": ["QC"], "design": {"kind": "grid", "switches": ["LT"]}})
    plan, recs = records(config, {"baseline": 0.8}, {"LT": np.ones(ROWS, dtype=int)})
    collapsed = next(r for r in recs if r.label == "LT")
    assert collapsed.degenerate.startswith("predicts one class (100.0% yes)")
    contrast = by_name(contrasts(plan, recs, models=["tiny"]), "QC", "baseline → LT")
    assert contrast.result is None and contrast.note == "no verdict: 1 of 2 trials learned nothing"


def test_learned_nothing_also_catches_f1_no_better_than_all_yes():
    assert learned_nothing(frame(noisy(0.9, seed=3))) is None
    weak = (np.random.default_rng(4).random(ROWS) < 0.9).astype(int)  # "yes" at random
    reason = learned_nothing(frame(weak))
    assert reason is not None and "not above the all-yes F1" in reason


def test_paired_interval_matches_a_slow_reference_loop():
    a, b = frame(noisy(0.75, seed=5)), frame(noisy(0.82, seed=6))
    result = paired_f1_difference(align(a, b), n_resamples=4000, seed=0)
    rng = np.random.default_rng(123)
    differences = []
    for _ in range(4000):  # the textbook paired bootstrap: resample row indices, both systems
        rows = rng.integers(0, ROWS, ROWS)
        f1 = []
        for predicted in (a["prediction"].to_numpy()[rows], b["prediction"].to_numpy()[rows]):
            labels = LABELS[rows]
            tp = np.sum((predicted == 1) & (labels == 1))
            f1.append(2 * tp / (2 * tp + np.sum(predicted != labels)))
        differences.append(f1[1] - f1[0])
    low, high = np.percentile(differences, [2.5, 97.5])
    assert result.low == pytest.approx(low, abs=0.006)
    assert result.high == pytest.approx(high, abs=0.006)


def test_factorial_effects_recover_a_planted_main_effect_and_no_interaction():
    from harness.stats import binary_scores
    from harness.verdicts import factorial_estimates

    config = parse_config({"tasks": ["QC", "QI"], "seeds": [0, 1, 2],
                           "design": {"kind": "grid", "switches": ["LT", "HCT", "SIT"]}})
    plan, recs = records(config, {"baseline": 0.75, "LT": 0.75, "HCT": 0.9, "LT+HCT": 0.9,
                                  "SIT": 0.75, "LT+SIT": 0.75})
    effects = {e.name: e for e in factorial_estimates(plan, recs, model="tiny", task="QC",
                                                      switches=["LT", "HCT", "SIT"])}
    assert set(effects) == {"LT", "HCT", "LT:HCT"}  # SIT does not apply to QC
    f1 = {label: np.mean([binary_scores(r.predictions["label"], r.predictions["prediction"]).f1
                          for r in recs if r.label == label and r.task == "QC"])
          for label in ("baseline", "LT", "HCT", "LT+HCT")}
    expected = (f1["HCT"] + f1["LT+HCT"]) / 2 - (f1["baseline"] + f1["LT"]) / 2
    hct = effects["HCT"]
    assert hct.estimate == pytest.approx(expected) and hct.low > 0.08 and hct.t_low > 0
    assert effects["LT"].low < 0 < effects["LT"].high
    assert effects["LT:HCT"].low < 0 < effects["LT:HCT"].high


def test_learned_nothing_is_one_sided_so_a_modest_real_gain_is_not_flagged():
    # Trials whose gain over all-"yes" is real but small: the two-sided 95% interval touches 0,
    # the one-sided 95% bound does not; such a trial learned something and keeps its verdicts.
    found = 0
    for seed in range(40):  # right on 20% of rows, wrong on 5%, else "yes"
        draw = np.random.default_rng(seed).random(ROWS)
        predictions = frame(np.where(draw < 0.2, LABELS, np.where(draw < 0.25, 1 - LABELS, 1)))
        pair = align(predictions.assign(prediction=1), predictions)
        two_sided = paired_f1_difference(pair, n_resamples=1000, groups="group")
        one_sided = paired_f1_difference(pair, n_resamples=1000, groups="group", confidence=0.9)
        if two_sided.low <= 0 < one_sided.low:
            found += 1
            assert learned_nothing(predictions) is None
    assert found > 0

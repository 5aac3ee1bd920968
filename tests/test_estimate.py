"""The dry run's estimate: measured per-row rates times the planned trials' rows."""

from __future__ import annotations

import json

import pytest

from harness.config import parse_config
from harness.data.prepare import PreparedData
from harness.estimate import estimate_line, measured_rates, task_rows, trial_seconds
from harness.plan import build_plan
from harness.record import TrialRecord

FINGERPRINTS = {"QC": "qc-1", "QI": "qi-1"}


def finished(spec, *, train_rate: float, score_rate: float, key: str = "") -> TrialRecord:
    return TrialRecord(key=key or spec.key, name=spec.name, task=spec.task,
                       components=spec.components, seed=spec.seed, model=spec.model,
                       status="FINISHED", machine="test box",
                       metrics={"train_examples_per_second": train_rate,
                                "score_examples_per_second": score_rate, "train_seconds": 1.0})


def test_rates_from_a_small_sweep_estimate_the_same_trials_at_full_scale():
    small = parse_config({"tasks": ["QC"], "training": {"epochs": 2},
                          "design": {"kind": "grid", "switches": ["QR", "ICL"]}})
    full = small.model_copy(update={"data": small.data.model_copy(update={
        "synth": small.data.synth.model_copy(update={"scale": "full"})})})
    small_plan = build_plan(small, data_fingerprints=FINGERPRINTS)
    by_label = {spec.label: spec for spec in small_plan.trials}
    records = [finished(by_label["baseline"], train_rate=100.0, score_rate=1000.0, key="old-1"),
               finished(by_label["QR"], train_rate=300.0, score_rate=3000.0, key="old-2"),
               finished(by_label["ICL"], train_rate=10.0, score_rate=50.0, key="old-3")]
    rates = measured_rates(records)
    data = PreparedData(directory=None, source="built-in benchmark", fingerprints=FINGERPRINTS)
    rows = task_rows(full, data, "QC")
    assert (rows.train, rows.evaluation, rows.unlabelled) == (300_000, 100_000, 0)

    plan = {spec.label: spec for spec in build_plan(full, data_fingerprints=FINGERPRINTS).trials}
    # no prompt component: the mean of the two plain trials' per-example seconds
    per_train, per_score = (1 / 100 + 1 / 300) / 2, (1 / 1000 + 1 / 3000) / 2
    assert trial_seconds(plan["QR"], rows, rates) == pytest.approx(
        300_000 * 2 * per_train + 100_000 * per_score)
    # ICL prompts are longer: their own rate
    assert trial_seconds(plan["QR+ICL"], rows, rates) == pytest.approx(
        300_000 * 2 / 10 + 100_000 / 50)
    line = estimate_line(full, build_plan(full, data_fingerprints=FINGERPRINTS), data, records,
                         finished_keys=set())
    assert "4 of 4 trials to run" in line and "QC 300,000 train / 100,000 scored rows" in line
    assert "3 finished trials on test box" in line
    seconds = [trial_seconds(spec, rows, rates) for spec in plan.values()]
    # each QR trial's checker: 3 fold fits of about a trial's time each (at most: cached)
    total = sum(seconds) + 6 * sum(seconds) / len(seconds)
    assert "6 QR checker fits" in line and f"about {total / 60:.1f} min" in line


def test_competition_files_are_counted_without_loading(tmp_path):
    row = {"id": "1", "language": "en", "origin_query": "q", "category_path": "c"}
    (tmp_path / "train_QC.txt").write_text("".join(json.dumps({**row, "label": 1}) + "\n"
                                                   for _ in range(100)) + "\n")
    (tmp_path / "dev_QC.txt").write_text("".join(json.dumps(row) + "\n" for _ in range(50)))
    (tmp_path / "test_QC.txt").write_text("".join(json.dumps(row) + "\n" for _ in range(40)))
    config = parse_config({"tasks": ["QC"], "data": {"source": "dir", "dir": str(tmp_path)}})
    data = PreparedData(directory=tmp_path, source="directory", fingerprints=FINGERPRINTS)
    rows = task_rows(config, data, "QC")
    # unlabelled dev and test: a 20% holdout of train is scored, dev and test are predicted
    assert (rows.train, rows.evaluation, rows.unlabelled) == (80, 20, 90)


def test_without_a_finished_trial_the_duration_is_unknown():
    config = parse_config({"tasks": ["QC"]})
    plan = build_plan(config, data_fingerprints=FINGERPRINTS)
    data = PreparedData(directory=None, source="built-in benchmark", fingerprints=FINGERPRINTS)
    line = estimate_line(config, plan, data, [], finished_keys=set())
    assert "duration unknown" in line
    assert estimate_line(config, plan, data, [], finished_keys=set(plan.keys)).endswith("nothing")

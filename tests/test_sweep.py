"""End to end: a tiny sweep on the built-in benchmark with the built-in model, read back from
MLflow; resume, determinism, the stage cache, failure isolation."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from harness.sweep import run_sweep
from harness.tracking import TRIAL_KEY_TAG
from tests.sweep_helpers import child_runs, tiny_config


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    config = tiny_config(root)
    summary = run_sweep(config, progress=False)
    return root, config, summary


def test_sweep_logs_one_finished_child_per_trial(finished_sweep):
    root, _, summary = finished_sweep
    runs = child_runs(root)
    # grid over LT, HCT: 4 QC configurations, 2 for QI (HCT does not apply to QI)
    assert summary.planned == 6 and summary.finished == 6 and not summary.failed
    assert len(runs) == 6 and set(runs["status"]) == {"FINISHED"}
    assert runs[f"tags.{TRIAL_KEY_TAG}"].is_unique
    assert runs["tags.mlflow.parentRunId"].nunique() == 1
    assert sorted(runs["params.task"]) == ["QC"] * 4 + ["QI"] * 2
    for column in ["metrics.f1", "metrics.precision", "metrics.recall", "metrics.f1/seen",
                   "metrics.f1/unseen", "metrics.f1/en", "metrics.f1/de", "metrics.train_seconds",
                   "metrics.score_seconds", "metrics.train_examples_per_second", "metrics.train_loss",
                   "params.LT", "params.HCT", "params.QR", "params.lora.r", "params.seed",
                   "params.inputs.data", "params.model.name"]:
        assert runs[column].notna().all(), column
    # each shared stage ran once per input frame (train and test of each task), not per trial
    assert summary.cache_counts["LT"]["misses"] == 4 and summary.cache_counts["LT"]["hits"] >= 2
    assert summary.cache_counts["HCT"]["misses"] == 2
    parent = mlflow.search_runs(experiment_names=["e2e"], filter_string="tags.`harness.role` = 'sweep'")
    assert len(parent) == 1 and parent["metrics.dropped/QI/train"].iloc[0] == 0
    # the sweep's own account of its time: model work against worker time, on the parent run
    timing = summary.timing
    assert timing.trials == 6 and timing.workers == 1
    runs_model = runs[["metrics.train_seconds", "metrics.score_seconds"]].sum().sum()
    assert timing.model_seconds == pytest.approx(runs_model, rel=1e-6)
    assert 0 < timing.overhead_share < 1 and timing.model_seconds < timing.wall_seconds
    assert parent["metrics.sweep_overhead_share"].iloc[0] == pytest.approx(timing.overhead_share)
    assert parent["metrics.sweep_trials_run"].iloc[0] == 6
    qi = runs[runs["params.task"] == "QI"]
    assert qi["metrics.f1/vn"].notna().all()  # QI's unseen languages are scored


def test_predictions_are_logged_per_row(finished_sweep):
    root, _, _ = finished_sweep
    run = child_runs(root).iloc[0]
    local = mlflow.artifacts.download_artifacts(run_id=run["run_id"],
                                                artifact_path=f"predictions/{run['params.eval_split']}.csv")
    predictions = pd.read_csv(local)
    assert list(predictions.columns) == ["id", "language", "label", "group", "p_yes", "prediction"]
    assert len(predictions) == int(run["params.eval_rows"])
    assert predictions["p_yes"].between(0, 1).all()


def test_the_model_learns_above_the_all_yes_baseline(finished_sweep):
    root, _, _ = finished_sweep
    runs = child_runs(root)
    assert (runs["metrics.f1/seen"] > runs["metrics.baseline_f1"]).mean() >= 0.5


def test_report_has_the_table4_shape(finished_sweep):
    root, _, summary = finished_sweep
    text = summary.report.read_text()
    assert summary.report == root / "reports" / "e2e" / "ablation.md"
    assert ("| configuration | QC | QI | overall (0.5·QC + 0.5·QI) | Δ QC vs baseline | "
            "Δ QI vs baseline | seconds per trial |") in text
    table = text.split("## Model `tiny`", 1)[1].split("###", 1)[0]
    for label in ("baseline", "LT", "HCT", "LT+HCT"):
        assert f"| {label} |" in table or f"| **{label}** |" in table
    assert "| **" in table  # the best row is bold
    frame = pd.read_csv(root / "reports" / "e2e" / "ablation.csv")
    overall = frame.set_index("configuration")["overall"]
    assert np.allclose(overall, (frame.set_index("configuration")[["QC", "QI"]].mean(axis=1)))
    assert "ar * (n=" in text and " ±0." in text
    assert "### Which component helps" in text and "| QC | baseline → LT |" in text
    assert "ROC-AUC" in text


def test_rerun_skips_finished_trials_and_reproduces_f1(finished_sweep):
    root, config, _ = finished_sweep
    before = child_runs(root).set_index(f"tags.{TRIAL_KEY_TAG}")["metrics.f1"]
    summary = run_sweep(config, progress=False)
    after = child_runs(root)
    assert len(after) == 6 and summary.finished == 6  # no second run for a finished configuration
    # nothing recomputed: no stage, no trial
    assert summary.timing.trials == 0 and summary.timing.model_seconds == 0
    assert all(c["misses"] == 0 for c in summary.cache_counts.values())
    # a fresh sweep (new study and MLflow store, same cache) reproduces every F1
    fresh = root / "fresh"
    fresh.mkdir()
    again = tiny_config(fresh, cache_dir=str(root / "cache"))
    run_sweep(again, progress=False)
    reproduced = child_runs(fresh).set_index(f"tags.{TRIAL_KEY_TAG}")["metrics.f1"]
    pd.testing.assert_series_equal(before.sort_index(), reproduced.sort_index(), check_names=False)


def test_leave_language_out_scores_each_held_out_language(tmp_path):
    config = tiny_config(tmp_path, tasks=["QC"], design={"kind": "grid", "switches": ["LT"]},
                         training={"epochs": 2, "learning_rate": 3e-3, "batch_size": 16, "max_length": 256},
                         data={"source": "synth", "synth": {"scale": "tiny", "seed": 0},
                               "eval": {"protocol": "leave-language-out", "languages": ["ja"]}})
    summary = run_sweep(config, progress=False)
    runs = child_runs(tmp_path)
    held = runs[runs["params.heldout_language"] == "ja"]
    assert summary.finished == 4 and len(held) == 2
    assert (held["params.eval_split"] == "test-ja").all()
    assert held["metrics.f1/ja"].notna().all() and held["metrics.f1/unseen"].notna().all()
    assert held["metrics.f1/seen"].isna().all()  # ja was not trained on: it is the unseen language
    assert "leave-language-out" in summary.report.read_text()


def test_an_edited_plan_gets_its_own_parent_run_and_counts_only_its_trials(tmp_path, capsys):
    small = {"epochs": 1, "learning_rate": 3e-3, "batch_size": 16, "max_length": 256}
    first = tiny_config(tmp_path, tasks=["QC"], design={"kind": "grid", "switches": ["LT"]},
                        training=small)
    run_sweep(first, progress=False)
    edited = tiny_config(tmp_path, tasks=["QC"], design={"kind": "grid", "switches": ["HCT"]},
                         training=small)  # baseline unchanged, LT replaced by HCT
    capsys.readouterr()
    summary = run_sweep(edited, progress=False)
    out = capsys.readouterr().out
    assert "Plan: 2 trials — 1 already finished, 1 to run" in out
    assert "Done: 2 of 2 trials finished." in out and summary.finished == 2

    mlflow.set_tracking_uri(first.tracking.uri)
    runs = mlflow.search_runs(experiment_names=["e2e"])
    parents = runs[runs["tags.harness.role"] == "sweep"].sort_values("start_time")
    assert list(parents["tags.mlflow.runName"]) == ["sweep e2e", "sweep e2e (2)"]
    assert set(parents["status"]) == {"FINISHED"}
    client = mlflow.MlflowClient(first.tracking.uri)
    for run_id in parents["run_id"]:  # each parent's config param is its config.json
        logged = client.download_artifacts(run_id, "config.json", str(tmp_path / run_id))
        param = client.get_run(run_id).data.params["config"]
        assert json.loads(param) == json.loads(Path(logged).read_text())
    assert any((tmp_path / "mlruns").rglob("config.json"))  # artifacts beside mlflow.db, not in cwd
    hct = runs[runs["tags.harness.components"] == "HCT"]
    assert list(hct["tags.mlflow.parentRunId"]) == [parents["run_id"].iloc[1]]
    from harness.tracking import Tracker

    measured = Tracker(uri=first.tracking.uri, experiment="e2e").measured_seconds("e2e")
    assert set(measured) == {("tiny", "QC", "baseline"), ("tiny", "QC", "LT"), ("tiny", "QC", "HCT")}
    assert all(seconds > 0 for seconds in measured.values())  # what longest-first orders by
    # the same plan again reuses its parent
    run_sweep(edited, progress=False)
    again = mlflow.search_runs(experiment_names=["e2e"], filter_string="tags.`harness.role` = 'sweep'")
    assert len(again) == 2

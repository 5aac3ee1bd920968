"""An Optuna search of per-language QR thresholds on the tiny model, with a pruner that prunes."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from harness.sweep import run_sweep
from tests.sweep_helpers import child_runs, tiny_config


def test_threshold_search_runs_prunes_and_resumes(tmp_path):
    config = tiny_config(
        tmp_path, tasks=["QC"],
        training={"epochs": 3, "learning_rate": 3e-3, "batch_size": 16, "max_length": 256},
        components={"QR": {"mode": "default", "use_model": False}},
        design={"kind": "optuna", "switches": [], "always_on": ["QR"],
                "optuna": {"n_trials": 6, "sampler": "random", "pruner": "median",
                           "startup_trials": 1, "qr_languages": ["en", "ja"]}})
    run_sweep(config, progress=False)
    study = optuna.load_study(study_name="e2e.QC.tiny.search", storage=config.study.storage)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == 6
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states
    searched = [t for t in study.trials if t.state == TrialState.COMPLETE][0]
    assert set(searched.params) == {f"{lang}.{name}" for lang in ("en", "ja")
                                    for name in ("hi_cos", "hi_jac", "lo_cos", "lo_jac")}
    runs = child_runs(tmp_path)
    assert runs["params.override.qr.en.hi_cos"].notna().sum() == 6  # the knobs are in MLflow
    assert (runs["tags.harness.pruned"] == "true").sum() == states.count(TrialState.PRUNED)

    report = (tmp_path / "reports" / "e2e" / "ablation.md").read_text()
    assert "## Optuna search (QC)" in report and "qr.en.hi_cos=" in report

    run_sweep(config, progress=False)  # resuming: the budget is already spent
    study = optuna.load_study(study_name="e2e.QC.tiny.search", storage=config.study.storage)
    assert len(study.trials) == 6

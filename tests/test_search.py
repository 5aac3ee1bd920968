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
    knobs = {f"components.QR.thresholds.{lang}.{name}" for lang in ("en", "ja")
             for name in ("hi_cos", "hi_jac", "lo_cos", "lo_jac")}
    assert set(searched.params) == knobs
    runs = child_runs(tmp_path)
    search_runs = runs[runs["tags.harness.trial_role"] == "search"]
    assert len(search_runs) == 6
    # MLflow shows the values each trial trained with, under the schema's own names
    for trial in study.trials:
        run = search_runs[search_runs["tags.harness.trial_key"] == trial.user_attrs["trial_key"]]
        assert len(run) == 1
        for knob in knobs:
            assert float(run[f"params.{knob}"].iloc[0]) == trial.params[knob]
    assert (search_runs["tags.harness.pruned"] == "true").sum() == states.count(TrialState.PRUNED)
    # the chosen configuration is rerun once on all training rows, with the best trial's values
    best = runs[runs["tags.harness.rows"] == "search best"]
    assert len(best) == 1
    for knob in knobs:
        assert float(best[f"params.{knob}"].iloc[0]) == study.best_trial.params[knob]

    report = (tmp_path / "reports" / "e2e" / "ablation.md").read_text()
    assert "## Optuna search (QC)" in report and "QR.thresholds.en.hi_cos=" in report

    run_sweep(config, progress=False)  # resuming: the budget is already spent
    study = optuna.load_study(study_name="e2e.QC.tiny.search", storage=config.study.storage)
    assert len(study.trials) == 6

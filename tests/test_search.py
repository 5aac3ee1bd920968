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


def test_planned_trials_of_an_optuna_design_are_never_pruned(tmp_path):
    config = tiny_config(
        tmp_path, tasks=["QC"], seeds=[0, 1],
        training={"epochs": 2, "learning_rate": 3e-3, "batch_size": 16, "max_length": 256},
        components={"QR": {"mode": "default", "use_model": False}},
        design={"kind": "optuna", "switches": [], "always_on": ["QR"],
                "optuna": {"n_trials": 3, "sampler": "random", "pruner": "median",
                           "startup_trials": 0, "qr_languages": ["en"]}})
    run_sweep(config, progress=False)
    main = optuna.load_study(study_name="e2e", storage=config.study.storage)
    assert [t.state for t in main.trials] == [TrialState.COMPLETE] * 2  # seeds 0 and 1
    planned = child_runs(tmp_path).query("`tags.harness.trial_role` == 'planned'")
    assert len(planned) == 3 and (planned["status"] == "FINISHED").all()  # 2 seeds + search best
    assert "tags.harness.pruned" not in planned or planned["tags.harness.pruned"].isna().all()


def test_a_search_whose_every_trial_fails_stops_counts_and_exits_non_zero(tmp_path, monkeypatch,
                                                                        capsys):
    import harness.sweep
    from harness.cli import main

    original = harness.sweep.run_trial

    def run_trial(spec, *args, **kwargs):
        if spec.role == "search":
            raise RuntimeError("the knob broke training")
        return original(spec, *args, **kwargs)

    monkeypatch.setattr(harness.sweep, "run_trial", run_trial)
    (tmp_path / "search.yaml").write_text(f"""
name: e2e
data: {{source: synth, synth: {{scale: tiny, seed: 0}}}}
tasks: [QC]
model: {{name: tiny, tiny: {{hidden_size: 32, num_layers: 1, num_heads: 2, num_kv_heads: 1,
        intermediate_size: 64, vocab_size: 600}}}}
training: {{epochs: 1, learning_rate: 3.0e-3, batch_size: 16, max_length: 256}}
design:
  kind: optuna
  optuna: {{n_trials: 4, sampler: random, search_qr_thresholds: false,
           params: {{lora.r: {{low: 4, high: 32, type: int, step: 4}}}}}}
tracking: {{uri: "sqlite:///{tmp_path / 'mlflow.db'}"}}
study: {{storage: "sqlite:///{tmp_path / 'study.db'}"}}
cache_dir: {tmp_path / 'cache'}
reports_dir: {tmp_path / 'reports'}
""", encoding="utf-8")
    assert main(["sweep", str(tmp_path / "search.yaml"), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "4 trial(s) failed" in out and "the knob broke training" in out
    assert "no trial completed" in out
    study = optuna.load_study(study_name="e2e.QC.tiny.search",
                              storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 4


def test_an_invalid_search_space_is_a_one_line_error_before_any_trial(tmp_path, capsys):
    from harness.cli import main

    (tmp_path / "bad.yaml").write_text(
        "design:\n  kind: optuna\n  optuna:\n    params:\n"
        "      lora.r: {low: 4, high: 64, log: true, step: 4, type: int}\n", encoding="utf-8")
    assert main(["sweep", str(tmp_path / "bad.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "design.optuna.params.lora.r" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]

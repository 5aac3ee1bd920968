"""`sweep --workers N`: local worker processes share one queue; each trial runs once."""

from __future__ import annotations

import mlflow
import optuna
from optuna.trial import TrialState

from harness.components import REGISTRY
from harness.study import KEY_ATTR
from harness.sweep import run_sweep
from tests.sweep_helpers import child_runs, tiny_config
from tests.test_registry import Shout


def test_two_local_workers_run_each_trial_once_and_share_the_work(tmp_path, capfd):
    # A plugin registered and removed earlier rebuilds the schema class; children must still start.
    REGISTRY.unregister(REGISTRY.register(Shout()).name)
    config = tiny_config(tmp_path, tasks=["QC"], design={"kind": "grid", "switches": ["LT"]},
                         seeds=[0, 1],
                         training={"epochs": 20, "learning_rate": 3e-3, "batch_size": 16,
                                   "max_length": 256})
    summary = run_sweep(config, progress=False, workers=2)

    runs = child_runs(tmp_path)
    assert sorted(runs["status"]) == ["FINISHED"] * 4
    assert runs["tags.harness.trial_key"].nunique() == 4
    study = optuna.load_study(study_name="e2e", storage=config.study.storage)
    completed = [t.user_attrs[KEY_ATTR] for t in study.get_trials(states=(TrialState.COMPLETE,))]
    assert sorted(completed) == sorted(runs["tags.harness.trial_key"])
    assert len(summary.per_worker) == 2 and sum(summary.per_worker.values()) == 4
    out = capfd.readouterr().out
    assert "Started 1 more local worker(s)" in out and "[worker 1] " in out
    assert "Trials run by each worker: pid " in out
    mlflow.set_tracking_uri(config.tracking.uri)
    parents = mlflow.search_runs(experiment_names=["e2e"], filter_string="tags.`harness.role` = 'sweep'")
    assert list(parents["status"]) == ["FINISHED"]
    assert summary.report is not None and summary.report.exists()

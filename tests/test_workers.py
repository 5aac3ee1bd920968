"""`sweep --workers N`: local worker processes share one queue; each trial runs once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter

import mlflow
import optuna
import pytest
import yaml
from optuna.trial import TrialState

from harness.components import REGISTRY
from harness.study import KEY_ATTR
from harness.sweep import run_sweep
from harness.workers import oversubscription
from tests.sweep_helpers import TINY_MODEL, child_runs, tiny_config
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
    # Both processes read and write one cache: every stage output on disk was computed by exactly
    # one of them (a stage computed twice would count two misses for one file).
    computed = [int(n) for n in re.findall(r"Stage cache: \d+ hits, (\d+) computed", out)]
    entries = [p for p in (tmp_path / "cache" / "stages").rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert len(computed) == 2 and sum(computed) == len(entries) > 0
    mlflow.set_tracking_uri(config.tracking.uri)
    parents = mlflow.search_runs(experiment_names=["e2e"], filter_string="tags.`harness.role` = 'sweep'")
    assert list(parents["status"]) == ["FINISHED"]
    assert summary.report is not None and summary.report.exists()


def test_a_worker_killed_mid_trial_is_rerun_by_the_others_and_each_trial_finishes_once(tmp_path):
    raw = {"name": "e2e", "data": {"source": "synth", "synth": {"scale": "tiny", "seed": 0}},
           "tasks": ["QC"], "model": TINY_MODEL,
           "lora": {"r": 4, "alpha": 8, "train_embeddings": True},
           # long enough that the kill lands inside a trial
           "training": {"epochs": 6, "learning_rate": 3e-3, "batch_size": 16, "max_length": 256},
           "design": {"kind": "grid", "switches": ["LT", "HCT"]}, "seeds": [0, 1],
           "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
           "study": {"storage": f"sqlite:///{tmp_path / 'study.db'}", "heartbeat_interval": 1,
                     "grace_period": 4},
           "cache_dir": str(tmp_path / "cache"), "reports_dir": str(tmp_path / "reports")}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    process = subprocess.Popen([sys.executable, "-m", "harness", "sweep", str(path), "--workers", "3",
                                "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=tmp_path)
    lines, victim, deadline = [], None, time.time() + 300
    for line in process.stdout:
        lines.append(line)
        if line.startswith("Started 2 more local worker(s): pids "):
            victim = int(line.rsplit(",", 1)[1])  # worker 2
        if victim and line.startswith("[worker 2] [trial") and "train rows" in line:
            time.sleep(1.0)  # inside that trial's training
            os.kill(victim, signal.SIGKILL)
            break
        assert time.time() < deadline, "worker 2 never started a trial:\n" + "".join(lines)
    output = "".join(lines) + process.communicate(timeout=300)[0]
    assert process.returncode == 0, output
    assert "Traceback" not in output and "exited with code -9" in output

    study = optuna.load_study(study_name="e2e", storage=raw["study"]["storage"])
    complete = Counter(t.user_attrs[KEY_ATTR] for t in study.get_trials(states=(TrialState.COMPLETE,)))
    assert len(complete) == 8 and set(complete.values()) == {1}  # 4 configurations x 2 seeds, once
    runs = child_runs(tmp_path)
    finished = runs[runs["status"] == "FINISHED"]
    assert sorted(finished["tags.harness.trial_key"]) == sorted(complete)
    assert list(runs[runs["status"] != "FINISHED"]["status"]) == ["KILLED"]  # the killed one
    mlflow.set_tracking_uri(raw["tracking"]["uri"])
    parents = mlflow.search_runs(experiment_names=["e2e"], filter_string="tags.`harness.role` = 'sweep'")
    assert list(parents["status"]) == ["FINISHED"]
    assert parents["end_time"].iloc[0] >= finished["end_time"].max()  # ended after the last trial


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_three_sweep_commands_started_together_run_each_configuration_once(tmp_path, backend, request):
    url = (f"sqlite:///{tmp_path / 'study.db'}" if backend == "sqlite"
           else request.getfixturevalue("postgres").create_database("together"))
    raw = {"name": "e2e", "data": {"source": "synth", "synth": {"scale": "tiny", "seed": 0}},
           "tasks": ["QC"], "model": TINY_MODEL, "lora": {"r": 4, "alpha": 8},
           "training": {"epochs": 1, "batch_size": 16, "max_length": 256},
           "design": {"kind": "grid", "switches": ["LT"]}, "seeds": [0, 1],
           "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
           "study": {"storage": url},
           "cache_dir": str(tmp_path / "cache"), "reports_dir": str(tmp_path / "reports")}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    command = [sys.executable, "-m", "harness", "sweep", str(path), "--no-progress"]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  cwd=tmp_path) for _ in range(3)]
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output
        assert "Traceback" not in output, output

    study = optuna.load_study(study_name="e2e", storage=url)
    trials = study.get_trials(deepcopy=False)
    queued = [t for t in trials if KEY_ATTR in t.user_attrs]
    # A worker that finds the queue emptied under it gets a fresh trial from Optuna and drops it.
    assert all(t.user_attrs.get("harness.empty") for t in trials if t not in queued)
    assert len({t.user_attrs[KEY_ATTR] for t in queued}) == len(queued) == 4  # enqueued once
    assert [t.state for t in queued] == [TrialState.COMPLETE] * 4
    runs = child_runs(tmp_path)
    assert len(runs) == 4 and runs["tags.harness.trial_key"].nunique() == 4  # finished once
    assert list(runs["status"]) == ["FINISHED"] * 4
    mlflow.set_tracking_uri(raw["tracking"]["uri"])
    parents = mlflow.search_runs(experiment_names=["e2e"], filter_string="tags.`harness.role` = 'sweep'")
    assert list(parents["status"]) == ["FINISHED"]
    assert (tmp_path / "reports" / "e2e" / "ablation.md").read_text().startswith("#")


def test_more_torch_threads_than_cores_is_warned_about():
    warning = oversubscription(2, 2, 2)
    assert warning and "4 threads on 2 CPU cores" in warning and "model.cpu_threads 1" in warning
    assert oversubscription(2, 1, 2) is None  # one thread per core: fine
    assert oversubscription(2, None, 2) is None  # the harness chooses the threads itself
    assert oversubscription(1, 8, 2) is None  # one process: torch's own business

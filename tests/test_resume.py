"""Crash safety: a failing trial does not stop the sweep; a sweep killed with SIGKILL in the
middle of a trial and rerun ends with every configuration finished exactly once in MLflow."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

from harness.config import parse_config
from harness.sweep import run_sweep
from tests.sweep_helpers import TINY_MODEL, child_runs, tiny_config


def test_a_failing_trial_is_recorded_and_the_others_finish(tmp_path):
    missing = str(tmp_path / "no-such-model")
    config = tiny_config(tmp_path, tasks=["QC"], design={"kind": "grid", "switches": ["LT"],
                                                           "models": ["tiny", missing]})
    summary = run_sweep(config, progress=False)
    runs = child_runs(tmp_path)
    assert sorted(runs["status"]) == ["FAILED", "FAILED", "FINISHED", "FINISHED"]
    failed = runs[runs["status"] == "FAILED"]
    assert failed["tags.harness.error"].str.contains("no-such-model").all()
    assert len(summary.failed) == 2 and all("no-such-model" in error for _, error in summary.failed)

    # A plain rerun does not retry failures; --retry-failed reruns only those.
    run_sweep(config, progress=False)
    assert len(child_runs(tmp_path)) == 4
    run_sweep(config, progress=False, retry_failed=True)
    runs = child_runs(tmp_path)
    assert len(runs) == 6 and (runs["status"] == "FINISHED").sum() == 2


def _write_config(root: Path) -> Path:
    raw = {
        "name": "e2e",
        "data": {"source": "synth", "synth": {"scale": "tiny", "seed": 0}},
        "tasks": ["QC"],
        "model": TINY_MODEL,
        "lora": {"r": 4, "alpha": 8, "train_embeddings": True},
        # long enough that the signal lands inside trial 1 even on a loaded machine: with 12
        # epochs (3 s of training since the shared-prefix forward) a CI run under load saw the
        # sweep finish both trials before the Ctrl-C took effect
        "training": {"epochs": 30, "learning_rate": 3e-3, "batch_size": 16, "max_length": 256},
        "design": {"kind": "grid", "switches": ["LT"]},
        "tracking": {"uri": f"sqlite:///{root / 'mlflow.db'}"},
        "study": {"storage": f"sqlite:///{root / 'study.db'}"},
        "cache_dir": str(root / "cache"),
        "reports_dir": str(root / "reports"),
    }
    path = root / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _start_sweep_and_wait_for_training(root: Path) -> tuple[subprocess.Popen, list[str], dict]:
    """Start `harness sweep` in a subprocess and return once trial 1 is training."""
    command = [sys.executable, "-m", "harness", "sweep", str(_write_config(root)), "--no-progress"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=env, cwd=root)
    deadline = time.time() + 240
    for line in process.stdout:
        if "[trial 1/2]" in line and "train rows" in line:
            break
        assert time.time() < deadline, "the sweep never started a trial"
    time.sleep(1.5)  # inside trial 1's training
    return process, command, env


def test_sigkill_mid_trial_then_rerun_finishes_each_configuration_once(tmp_path):
    process, command, env = _start_sweep_and_wait_for_training(tmp_path)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    runs = child_runs(tmp_path)
    assert list(runs["status"]) == ["RUNNING"]  # killed mid-trial, nothing finished

    rerun = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "re-queued" in rerun.stdout
    runs = child_runs(tmp_path)
    finished = runs[runs["status"] == "FINISHED"]
    assert len(finished) == 2 and finished["tags.harness.trial_key"].is_unique
    assert list(runs[runs["status"] != "FINISHED"]["status"]) == ["KILLED"]  # not left RUNNING

    config = parse_config(yaml.safe_load((tmp_path / "sweep.yaml").read_text()))
    study = optuna.load_study(study_name="e2e", storage=config.study.storage)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 2


def test_ctrl_c_marks_the_running_trial_and_a_rerun_resumes(tmp_path):
    process, command, env = _start_sweep_and_wait_for_training(tmp_path)
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=60)[0]
    assert process.returncode == 130, output
    assert "rerun the same command to resume" in output and "Traceback" not in output
    assert list(child_runs(tmp_path)["status"]) == ["KILLED"]

    rerun = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    runs = child_runs(tmp_path)
    assert sorted(runs["status"]) == ["FINISHED", "FINISHED", "KILLED"]

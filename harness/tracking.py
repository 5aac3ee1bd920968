"""Everything MLflow: one parent run per sweep, one child run per trial.

The client API is used throughout (no process-global active run), so several workers can log to
one tracking server, and transformers' own MLflow callback is never involved.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from harness.errors import HarnessError
from harness.record import COST_METRICS, TRIAL_KEY_TAG, TrialRecord
from harness.secrets import mask, remember

# Artifact downloads for the report would otherwise draw one progress bar per file.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# With a tracking server MLflow prints "View run ... at: <url>" for every run it ends; the
# sweep prints its own lines and one dashboard link instead.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

SWEEP_TAG = "harness.sweep"
ROLE_TAG = "harness.role"
PLAN_TAG = "harness.plan"  # hash of the plan's trial keys: one parent run per plan
PARENT_TAG = "mlflow.parentRunId"
_BATCH = 900  # MLflow accepts at most 1000 metrics per batch


def resolve_tracking_uri(configured: str | None) -> str:
    """The YAML's URI, else $MLFLOW_TRACKING_URI, else MLflow's own default."""
    if configured:
        return configured
    return os.environ.get("MLFLOW_TRACKING_URI") or mlflow.get_tracking_uri()


def artifact_location(uri: str) -> str | None:
    """Artifacts of a local SQLite store go in `mlruns/` beside the database file, wherever
    the command runs from (MLflow's default is `./mlruns` in the current directory)."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlruns").as_uri()


class TrackingError(HarnessError):
    """The MLflow tracking store cannot be reached."""


def _experiment(client: MlflowClient, uri: str, name: str) -> mlflow.entities.Experiment | None:
    """The experiment by name; a store that cannot be reached is one masked line."""
    remember(uri)
    try:
        return client.get_experiment_by_name(name)
    except Exception as error:  # noqa: BLE001 - SQLAlchemy, requests and MLflow errors alike
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TrackingError(f"tracking.uri / MLFLOW_TRACKING_URI {mask(uri)!r}: cannot reach the "
                            f"MLflow tracking store ({mask(first)})") from None


class Tracker:
    """An MLflow experiment holding one sweep's parent run and its trial runs."""

    @classmethod
    def existing(cls, *, uri: str, experiment: str) -> Tracker | None:
        """The experiment if its store and the experiment already exist; creates nothing."""
        local = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else (
            uri.removeprefix("file://") if uri.startswith("file://") or "://" not in uri else None)
        if local is not None and not Path(local).exists():
            return None
        if _experiment(MlflowClient(tracking_uri=uri), uri, experiment) is None:
            return None
        return cls(uri=uri, experiment=experiment)

    def __init__(self, *, uri: str, experiment: str) -> None:
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        found = _experiment(self.client, uri, experiment)
        if found is None:
            try:
                self.experiment_id = self.client.create_experiment(
                    experiment, artifact_location=artifact_location(uri))
            except mlflow.exceptions.MlflowException:  # another worker created it first
                self.experiment_id = self.client.get_experiment_by_name(experiment).experiment_id
        else:
            self.experiment_id = found.experiment_id

    # ------------------------------------------------------------------ sweep run

    def sweep_run(self, sweep: str, *, plan_hash: str, params: Mapping[str, Any],
                  artifacts: Mapping[str, str] = {}) -> str:  # noqa: B006 - read only
        """The sweep's parent run for this plan: the newest with this sweep name and plan hash,
        else a new one (its params and `artifacts` are logged once, at creation, so they always
        agree). An edit that changes the plan's trial keys starts a new parent, named
        `sweep NAME (2)` and so on; trials the edit left unchanged are reused, not rerun."""
        base = f"tags.`{SWEEP_TAG}` = '{sweep}' and tags.`{ROLE_TAG}` = 'sweep'"
        runs = self.client.search_runs([self.experiment_id],
                                       filter_string=f"{base} and tags.`{PLAN_TAG}` = '{plan_hash}'",
                                       order_by=["attributes.start_time DESC"], max_results=1)
        if runs:
            run_id = runs[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        earlier = len(self.client.search_runs([self.experiment_id], filter_string=base,
                                              max_results=1000))
        name = f"sweep {sweep}" + (f" ({earlier + 1})" if earlier else "")
        run = self.client.create_run(self.experiment_id, run_name=name,
                                     tags={SWEEP_TAG: sweep, ROLE_TAG: "sweep", PLAN_TAG: plan_hash})
        self.log_params(run.info.run_id, params)
        for artifact, text in artifacts.items():
            self.log_text(run.info.run_id, text, artifact)
        return run.info.run_id

    def logged_data_directory(self, sweep: str) -> str | None:
        """The data directory the newest parent run of `sweep` logged."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{SWEEP_TAG}` = '{sweep}' and tags.`{ROLE_TAG}` = 'sweep'",
            order_by=["attributes.start_time DESC"], max_results=1)
        return runs[0].data.tags.get("harness.data.directory") if runs else None

    def set_experiment_tags(self, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_experiment_tag(self.experiment_id, key, value)

    def finish_sweep(self, run_id: str, *, failed: bool) -> None:
        self.client.set_terminated(run_id, status="FAILED" if failed else "FINISHED")

    # ----------------------------------------------------------------- trial runs

    def trial_runs(self, sweep: str, *, key: str | None = None,
                   status: str | None = None) -> list[mlflow.entities.Run]:
        filters = [f"tags.`{SWEEP_TAG}` = '{sweep}'", f"tags.`{ROLE_TAG}` = 'trial'"]
        if key:
            filters.append(f"tags.`{TRIAL_KEY_TAG}` = '{key}'")
        if status:
            filters.append(f"attributes.status = '{status}'")
        return list(self.client.search_runs([self.experiment_id], " and ".join(filters),
                                            max_results=50_000))

    def measured_seconds(self, sweep: str) -> dict[tuple[str, str, str], float]:
        """Mean seconds (train + score + QR checker) of the sweep's finished planned trials, by
        (model, task, configuration label): what longest-first ordering estimates from."""
        totals: dict[tuple[str, str, str], list[float]] = {}
        for record in map(TrialRecord.from_mlflow, self.trial_runs(sweep, status="FINISHED")):
            if record.role == "planned" and "train_seconds" in record.metrics:
                totals.setdefault((record.model, record.task, record.label), []).append(
                    sum(record.metrics.get(m, 0.0) for m in COST_METRICS))
        return {cell: sum(v) / len(v) for cell, v in totals.items()}

    def finished_run(self, sweep: str, key: str) -> mlflow.entities.Run | None:
        runs = self.trial_runs(sweep, key=key, status="FINISHED")
        return runs[0] if runs else None

    def close_stale_runs(self, sweep: str, key: str, *, status: str = "KILLED",
                         live_trials: set[str] = frozenset()) -> int:
        """Mark this trial's runs still RUNNING (their process died) as KILLED; a run whose Optuna
        trial number is in `live_trials` belongs to a live worker and is left alone."""
        stale = [run for run in self.trial_runs(sweep, key=key, status="RUNNING")
                 if run.data.tags.get("harness.optuna_trial") not in live_trials]
        for run in stale:
            self.client.set_terminated(run.info.run_id, status=status)
        return len(stale)

    def start_trial(self, *, sweep: str, parent_run_id: str, name: str,
                    tags: Mapping[str, str]) -> str:
        """A child run of the sweep's parent; `tags` carry the trial key (TrialRecord.tags)."""
        run = self.client.create_run(
            self.experiment_id, run_name=name,
            tags={PARENT_TAG: parent_run_id, SWEEP_TAG: sweep, ROLE_TAG: "trial", **tags})
        return run.info.run_id

    def end_trial(self, run_id: str, *, status: str, error: str | None = None) -> None:
        if error:
            self.client.set_tag(run_id, "harness.error", mask(error)[:4900])
        self.client.set_terminated(run_id, status=RunStatus.to_string(RunStatus.from_string(status)))

    # -------------------------------------------------------------------- logging

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for start in range(0, len(items), 90):
            self.client.log_batch(run_id, params=items[start:start + 90])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], *, step: int = 0) -> None:
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in sorted(metrics.items())]
        for start in range(0, len(items), _BATCH):
            self.client.log_batch(run_id, metrics=items[start:start + _BATCH])

    def log_series(self, run_id: str, name: str, values: list[float]) -> None:
        now = int(time.time() * 1000)
        items = [Metric(name, float(v), now, step) for step, v in enumerate(values)]
        for start in range(0, len(items), _BATCH):
            self.client.log_batch(run_id, metrics=items[start:start + _BATCH])

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def log_dict(self, run_id: str, value: Mapping[str, Any], artifact_file: str) -> None:
        self.client.log_dict(run_id, dict(value), artifact_file)

    def log_frame(self, run_id: str, frame: pd.DataFrame, artifact_file: str) -> None:
        """A table as a CSV artifact (row ids kept, so later statistics can pair trials)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            frame.to_csv(path, index=False)
            folder = str(Path(artifact_file).parent)
            self.client.log_artifact(run_id, str(path), None if folder == "." else folder)

    def load_frame(self, run_id: str, artifact_file: str) -> pd.DataFrame:
        with tempfile.TemporaryDirectory() as tmp:
            local = self.client.download_artifacts(run_id, artifact_file, tmp)
            return pd.read_csv(local, dtype={"id": str})

    def log_file(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def log_report(self, run_id: str, files: Any) -> None:
        """The report folder's files (a `publish.ReportFiles`) on the parent run, same layout."""
        root = files.markdown.parent
        for path in [files.markdown, *files.files, *files.archives]:
            folder = path.parent.relative_to(root).as_posix()
            self.log_file(run_id, path, None if folder == "." else folder)

    def metric_history(self, run_id: str, key: str) -> list[float]:
        """A metric's values in step order (e.g. the training loss per epoch)."""
        history = self.client.get_metric_history(run_id, key)
        return [m.value for m in sorted(history, key=lambda m: (m.step, m.timestamp))]


def trial_records(tracker: Tracker, sweep: str, *, keys: set[str] | None = None,
                  statuses: tuple[str, ...] = ("FINISHED",)) -> list[TrialRecord]:
    """The sweep's trial runs as records (newest per key), optionally only those of `keys`
    (a plan: this configuration, this data)."""
    runs = [run for status in statuses for run in tracker.trial_runs(sweep, status=status)]
    records = sorted((TrialRecord.from_mlflow(run) for run in runs),
                     key=lambda r: r.start_time, reverse=True)
    newest: dict[str, TrialRecord] = {}
    for record in records:
        if keys is None or record.key in keys:
            newest.setdefault(record.key, record)
    return list(newest.values())


def load_predictions(tracker: Tracker, records: list[TrialRecord]) -> None:
    """Attach each record's per-row evaluation predictions (from its MLflow artifact)."""
    for record in records:
        if record.predictions is None and record.run_id:
            record.predictions = tracker.load_frame(record.run_id, record.predictions_artifact)

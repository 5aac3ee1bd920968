"""Study and trial orchestration.

The Optuna study, not this process, is the source of truth for what ran: design configurations
are enqueued up front (`enqueue_trial` with the trial key as a user attribute), any number of
workers pull them with `study.optimize`, and a rerun of the same command skips finished trials,
reruns interrupted ones and creates no second MLflow run for a finished configuration. A trial
that raises is recorded as failed (study and MLflow) and the sweep goes on.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import sys
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import torch
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from harness import __version__
from harness.cache import StageCache
from harness.config import SweepConfig
from harness.data.prepare import PreparedData, prepare_data
from harness.learner import LoadedModel, load_base_model
from harness.plan import Plan, TrialSpec, build_plan, models_of
from harness.report import write_report
from harness.stages import Stages
from harness.tracking import (
    Tracker,
    dashboard_command,
    mask_url,
    resolve_tracking_uri,
    trial_results,
)
from harness.trial import run_trial, trial_params

KEY_ATTR = "trial_key"


@dataclass
class SweepSummary:
    planned: int
    finished: int
    failed: list[tuple[str, str]] = field(default_factory=list)
    report: Path | None = None
    tracking_uri: str = ""
    cache_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    pruned: int = 0


def log(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------- study


def storage_url(config: SweepConfig, override: str | None) -> str:
    if override:
        return override
    if config.study.storage:
        return config.study.storage
    path = config.cache_dir.parent / "studies.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path.resolve()}"


def open_study(config: SweepConfig, *, url: str, name: str) -> optuna.Study:
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    storage = RDBStorage(
        url, heartbeat_interval=config.study.heartbeat_interval,
        grace_period=config.study.grace_period,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=config.study.max_retry))
    search = config.design.optuna
    sampler = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler,
               "cmaes": optuna.samplers.CmaEsSampler, "qmc": optuna.samplers.QMCSampler}[search.sampler]
    pruner = {"none": optuna.pruners.NopPruner,
              "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=search.startup_trials),
              "successive-halving": optuna.pruners.SuccessiveHalvingPruner}[search.pruner]
    return optuna.create_study(study_name=name, storage=storage, load_if_exists=True,
                               direction="maximize", sampler=sampler(seed=config.seeds[0]),
                               pruner=pruner())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_orphans(study: optuna.Study) -> int:
    """Fail and re-enqueue RUNNING trials whose process on this host is gone (kill -9, reboot).

    Trials of other hosts are left to Optuna's heartbeat (stale after the grace period).
    """
    host = socket.gethostname()
    recovered = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = trial.user_attrs
        if attrs.get("harness.host") != host or _pid_alive(int(attrs.get("harness.pid", -1))):
            continue
        study._storage.set_trial_user_attr(trial._trial_id, "harness.interrupted", True)
        study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        study.enqueue_trial({}, user_attrs={KEY_ATTR: attrs[KEY_ATTR]})
        recovered += 1
    return recovered


def enqueue_plan(study: optuna.Study, trials: list[TrialSpec], *, retry_failed: bool) -> Counter[str]:
    """Put every trial not yet done or queued in front of the workers; returns counts by outcome."""
    states: dict[str, set[TrialState]] = {}
    interrupted: set[str] = set()
    for trial in study.get_trials(deepcopy=False):
        key = trial.user_attrs.get(KEY_ATTR)
        if key:
            states.setdefault(key, set()).add(trial.state)
            if trial.state == TrialState.FAIL and trial.user_attrs.get("harness.interrupted"):
                interrupted.add(key)
    counts: Counter[str] = Counter()
    for spec in trials:
        seen = states.get(spec.key, set())
        if seen & {TrialState.COMPLETE, TrialState.PRUNED}:
            counts["finished"] += 1
        elif seen & {TrialState.WAITING, TrialState.RUNNING}:
            counts["queued"] += 1
        elif TrialState.FAIL in seen and not retry_failed and spec.key not in interrupted:
            counts["failed"] += 1
        else:
            study.enqueue_trial({}, user_attrs={KEY_ATTR: spec.key})
            counts["enqueued"] += 1
    return counts


def _stop_when_queue_empty(study: optuna.Study, _trial: optuna.trial.FrozenTrial) -> None:
    if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        study.stop()


def _exit_on_second_interrupt() -> None:
    signal.signal(signal.SIGINT, lambda *_: os._exit(130))


# -------------------------------------------------------------------------- worker


class Worker:
    """Runs trials pulled from a study; keeps one base model loaded across its trials."""

    def __init__(self, *, config: SweepConfig, data: PreparedData, plan: Plan, tracker: Tracker,
                 parent_run_id: str, progress: bool = True) -> None:
        self.config = config
        self.data = data
        self.specs = {t.key: t for t in plan.trials}
        self.tracker = tracker
        self.parent_run_id = parent_run_id
        self.progress = progress
        self.cache = StageCache(config.cache_dir / "stages")
        self.stages = Stages(config=config, cache=self.cache, qc_train=data.qc_train())
        self.loaded: LoadedModel | None = None
        self.checkers: dict[str, LoadedModel] = {}
        self.done = 0

    def model(self, name: str) -> LoadedModel:
        if self.loaded is None or self.loaded.name != name:
            if self.loaded is not None:  # another base model: free the old one first
                self.loaded = None
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            model_config = self.config.model.model_copy(update={"name": name})
            log(f"Loading base model {name} ...")
            self.loaded = load_base_model(model=model_config, corpus=self.data.corpus(),
                                          cache_dir=self.config.cache_dir / "models")
        return self.loaded

    def checker(self, name: str | None, trial_model: str) -> LoadedModel:
        """QR's checker model: the trial's own base model unless the YAML names another."""
        if name is None or name == trial_model:
            return self.model(trial_model)
        if name not in self.checkers:
            log(f"Loading QR checker model {name} ...")
            self.checkers[name] = load_base_model(
                model=self.config.model.model_copy(update={"name": name}),
                corpus=self.data.corpus(), cache_dir=self.config.cache_dir / "models")
        return self.checkers[name]

    def run(self, spec: TrialSpec, trial: optuna.Trial | None, *, position: str) -> float:
        """Run one trial (or reuse its finished MLflow run); returns its F1."""
        sweep = self.config.name
        finished = self.tracker.finished_run(sweep, spec.key)
        if finished is not None:
            log(f"[{position}] {spec.name}: already finished in MLflow (run {finished.info.run_id[:8]})")
            return float(finished.data.metrics.get("f1", 0.0))
        self.tracker.close_stale_runs(sweep, spec.key)
        task_data = self.data.tasks[spec.task]
        sets = self.stages.evaluation_sets(task_data, heldout_language=spec.heldout_language,
                                           truth=self.data.truth.get(spec.task))
        run_id = self.tracker.start_trial(
            sweep=sweep, parent_run_id=self.parent_run_id, key=spec.key, name=spec.name,
            tags={"harness.task": spec.task, "harness.components": spec.label,
                  "harness.rows": " | ".join(spec.rows), "harness.version": __version__,
                  "harness.optuna_trial": str(trial.number) if trial is not None else ""})
        if trial is not None:
            trial.set_user_attr("mlflow_run_id", run_id)
        self.tracker.log_params(run_id, trial_params(self.config, spec, sets,
                                                     data_fingerprint=self.data.fingerprints[spec.task]))
        log(f"[{position}] {spec.name}: {len(sets.train)} train rows, {len(sets.evaluation)} "
            f"{sets.eval_name} rows")
        hits_before, misses_before = self.cache.totals()
        hook = None
        if trial is not None and self.config.design.kind == "optuna":
            def hook(epoch: int, loss: float, f1: float) -> None:
                trial.report(f1, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after epoch {epoch + 1} (F1 {f1:.4f})")
        try:
            outcome = run_trial(spec, config=self.config, sets=sets, stages=self.stages,
                                loaded=self.model(spec.model), tracker=self.tracker, run_id=run_id,
                                checker=lambda: self.checker(self.config.components.QR.checker_model,
                                                             spec.model),
                                progress=self.progress, epoch_hook=hook)
        except optuna.TrialPruned as pruned:
            self.tracker.set_tags(run_id, {"harness.pruned": "true"})
            self.tracker.end_trial(run_id, status="KILLED", error=str(pruned))
            log(f"[{position}] {spec.name}: {pruned}")
            raise
        except KeyboardInterrupt:
            _exit_on_second_interrupt()
            if trial is not None:
                trial.set_user_attr("harness.interrupted", True)
            self.tracker.end_trial(run_id, status="KILLED", error="interrupted (Ctrl-C)")
            raise
        except Exception as error:  # noqa: BLE001 - any trial failure is recorded, the sweep goes on
            message = f"{type(error).__name__}: {error}"
            if trial is not None:
                trial.set_user_attr("harness.error", message[:2000])
            self.tracker.end_trial(run_id, status="FAILED",
                                   error=message + "\n" + traceback.format_exc(limit=8))
            log(f"[{position}] {spec.name}: FAILED: {message}")
            raise
        hits, misses = self.cache.totals()
        self.tracker.log_metrics(run_id, {"cache/hits": hits - hits_before,
                                          "cache/misses": misses - misses_before})
        self.tracker.end_trial(run_id, status="FINISHED")
        m = outcome.metrics
        unseen = f", unseen {m['f1/unseen']:.4f}" if "f1/unseen" in m else ""
        log(f"[{position}] {spec.name}: F1 {m['f1']:.4f} (all-yes {m['baseline_f1']:.4f}; "
            f"seen {m.get('f1/seen', float('nan')):.4f}{unseen}) "
            f"train {m['train_seconds']:.1f}s score {m['score_seconds']:.1f}s")
        return float(m["f1"])

    def objective(self, total: int):
        def objective(trial: optuna.Trial) -> float:
            key = trial.user_attrs.get(KEY_ATTR)
            if key is None:  # another worker took the last queued trial
                trial.set_user_attr("harness.empty", True)
                trial.study.stop()
                raise optuna.TrialPruned("no queued trial left")
            if key not in self.specs:
                raise RuntimeError(f"trial key {key} is not in this sweep's plan (config changed?)")
            trial.set_user_attr("harness.host", socket.gethostname())
            trial.set_user_attr("harness.pid", os.getpid())
            self.done += 1
            return self.run(self.specs[key], trial, position=f"trial {self.done}/{total}")
        return objective


# -------------------------------------------------------------------------- driver


def print_plan(config: SweepConfig, plan: Plan, *, url: str, tracking_uri: str,
               trial_seconds: float | None) -> None:
    log(f"Sweep '{config.name}': design {config.design.kind}, {len(plan.configurations)} "
        f"configurations, {len(plan.trials)} trials (tasks {', '.join(config.tasks)}, "
        f"seeds {config.seeds}, models {sorted({t.model for t in plan.trials})})")
    if config.design.kind == "fractional":
        from harness.design import fractional

        design = fractional(config.design.switches, resolution=config.design.resolution,
                            always_on=config.design.always_on)
        log(design.describe())
    for spec in plan.trials:
        stages = ["data", *spec.components, "prompts", "train", "score"]
        extra = f" heldout={spec.heldout_language}" if spec.heldout_language else ""
        log(f"  {spec.key}  {spec.task}  {spec.label:<28} seed={spec.seed}{extra}  "
            f"stages: {' -> '.join(stages)}")
    if config.design.kind == "optuna":
        log(f"  + an Optuna search of {config.design.optuna.n_trials} trials per task "
            f"({config.design.optuna.sampler}, pruner {config.design.optuna.pruner})")
    count = len(plan.trials) + (config.design.optuna.n_trials * len(config.tasks)
                                if config.design.kind == "optuna" else 0)
    if trial_seconds:
        log(f"Estimated cost: {count} trials x {trial_seconds:.0f} s = {count * trial_seconds / 60:.1f} min "
            "(from the mean of this sweep's finished trials)")
    else:
        log("Estimated cost: unknown until one trial has finished (no finished trials in MLflow yet)")
    log(f"Study storage: {mask_url(url)}")
    log(f"MLflow: {mask_url(tracking_uri)}")


def run_sweep(config: SweepConfig, *, dry_run: bool = False, retry_failed: bool = False,
              storage: str | None = None, progress: bool = True, report: bool = True) -> SweepSummary:
    """Run (or resume) the sweep; returns what happened. Raises HarnessError on bad input."""
    # Our own lines report trials; Optuna would add a traceback per failed or interrupted trial.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    url = storage_url(config, storage)
    tracking_uri = resolve_tracking_uri(config.tracking.uri)
    data = prepare_data(config, load=not dry_run)
    plan = build_plan(config, data_fingerprints=data.fingerprints)
    tracker = Tracker(uri=tracking_uri, experiment=config.tracking.experiment or config.name)
    if dry_run:
        finished = trial_results(tracker, config.name)
        seconds = None
        if len(finished) and "metrics.train_seconds" in finished:
            seconds = float((finished["metrics.train_seconds"] + finished["metrics.score_seconds"]).mean())
        print_plan(config, plan, url=url, tracking_uri=tracking_uri, trial_seconds=seconds)
        return SweepSummary(planned=len(plan.trials), finished=0, tracking_uri=tracking_uri)

    log(data.describe())
    parent = tracker.sweep_run(config.name, params={"config": config.model_dump_json(),
                                                    "design": config.design.kind})
    tracker.log_text(parent, config.model_dump_json(indent=2), "config.json")
    tracker.log_text(parent, data.describe(), "data_summary.txt")
    tracker.log_metrics(parent, data.dropped_counts())
    worker = Worker(config=config, data=data, plan=plan, tracker=tracker, parent_run_id=parent,
                    progress=progress)
    study = open_study(config, url=url, name=config.name)
    recovered = recover_orphans(study)
    counts = enqueue_plan(study, plan.trials, retry_failed=retry_failed)
    log(f"Plan: {len(plan.trials)} trials — {counts['finished']} already finished, "
        f"{counts['enqueued'] + counts['queued']} to run"
        + (f", {counts['failed']} failed earlier (rerun them with --retry-failed)" if counts["failed"] else "")
        + (f"; {recovered} interrupted trial(s) re-queued" if recovered else ""))
    interrupted = False
    try:
        if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            study.optimize(worker.objective(counts["enqueued"] + counts["queued"]),
                           callbacks=[_stop_when_queue_empty], catch=(Exception,), gc_after_trial=True)
        if config.design.kind == "optuna":
            from harness.search import run_search

            run_search(config, worker=worker, url=url, open_study=open_study)
    except KeyboardInterrupt:
        interrupted = True
        _exit_on_second_interrupt()
        log("Interrupted: the running trial is marked KILLED; rerun the same command to resume.")
    failures = _failures(study, worker.specs)
    tracker.finish_sweep(parent, failed=bool(failures) or interrupted)
    searched = (config.design.optuna.n_trials * len(config.tasks) * len(models_of(config))
                if config.design.kind == "optuna" else 0)
    summary = SweepSummary(planned=len(plan.trials) + searched, finished=0, failed=failures,
                           tracking_uri=tracking_uri, cache_counts=worker.cache.counts())
    if interrupted:
        raise KeyboardInterrupt
    results = trial_results(tracker, config.name)
    summary.finished = len(results)
    summary.pruned = len(tracker.trial_runs(config.name, status="KILLED")) if searched else 0
    if report and len(results):
        summary.report = write_report(config, plan=plan, results=results, tracker=tracker,
                                      data=data)
        tracker.log_file(parent, summary.report)
    _print_summary(summary, config)
    return summary


def _failures(study: optuna.Study, specs: dict[str, TrialSpec]) -> list[tuple[str, str]]:
    latest: dict[str, optuna.trial.FrozenTrial] = {}
    for trial in study.get_trials(deepcopy=False):
        key = trial.user_attrs.get(KEY_ATTR)
        if key in specs:
            latest[key] = trial
    return [(specs[k].name, t.user_attrs.get("harness.error", "failed"))
            for k, t in latest.items() if t.state == TrialState.FAIL]


def _print_summary(summary: SweepSummary, config: SweepConfig) -> None:
    log("")
    pruned = f", {summary.pruned} stopped early (pruned or interrupted)" if summary.pruned else ""
    log(f"Done: {summary.finished} of {summary.planned} trials finished{pruned}.")
    hits = sum(c["hits"] for c in summary.cache_counts.values())
    misses = sum(c["misses"] for c in summary.cache_counts.values())
    log(f"Stage cache: {hits} hits, {misses} computed ("
        + ", ".join(f"{s} {c['misses']}/{c['hits'] + c['misses']}" for s, c in summary.cache_counts.items())
        + " computed/used)")
    if summary.failed:
        log(f"{len(summary.failed)} trial(s) failed:")
        for name, error in summary.failed:
            log(f"  {name}: {error}")
        log("Rerun only those with: python -m harness sweep CONFIG --retry-failed")
    if summary.report:
        log(f"Report: {summary.report}")
    log(f"Dashboard: {dashboard_command(summary.tracking_uri)}")
    sys.stdout.flush()

"""Sweep orchestration: plan -> queue -> workers -> records -> report.

The Optuna study, not this process, is the source of truth for what ran (see `study.py`): a
rerun of the same command skips finished trials, reruns interrupted ones and creates no second
MLflow run for a finished configuration. A trial that raises is recorded as failed (study and
MLflow) and the sweep goes on; failures are counted in the summary and the exit status.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from harness import __version__
from harness.cache import StageCache, stable_hash
from harness.config import SweepConfig
from harness.dashboard import dashboard_lines, experiment_tags
from harness.data.prepare import PreparedData, prepare_data
from harness.estimate import estimate_line
from harness.learner import LoadedModel, load_base_model
from harness.plan import Plan, TrialSpec, build_plan, models_of
from harness.publish import machine, write_report
from harness.record import COST_METRICS, MACHINE_TAG, TrialRecord
from harness.search import SearchOutcome, run_search
from harness.secrets import error_message, mask, masked_json
from harness.stages import Stages
from harness.study import (
    ERROR_ATTR,
    KEY_ATTR,
    drain,
    enqueue_plan,
    failures,
    longest_first,
    mark_worker,
    open_study,
    planning_lock,
    recover_orphans,
    storage_url,
    unfinished,
)
from harness.tracking import (
    Tracker,
    load_predictions,
    resolve_tracking_uri,
    trial_records,
)
from harness.trial import run_trial
from harness.workers import (
    join_local_workers,
    oversubscription,
    share_cores,
    start_local_workers,
    stop_local_workers,
    trials_per_worker,
)


@dataclass
class SweepSummary:
    planned: int
    finished: int
    failed: list[tuple[str, str]] = field(default_factory=list)
    report: Path | None = None
    tracking_uri: str = ""
    dashboard: list[str] = field(default_factory=list)  # the lines that say how to open it
    headline: str = ""  # the report's main table
    outputs: list[str] = field(default_factory=list)  # submission files written
    cache_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    pruned: int = 0
    per_worker: dict[str, int] = field(default_factory=dict)
    timing: SweepTiming | None = None  # the sweep process's own account of where time went


@dataclass(frozen=True)
class SweepTiming:
    """Where this run of the sweep spent its wall time: the trials' model work (training, QR
    checker, scoring; each trial's own timers) against the time its worker processes existed
    (wall time x workers). The rest -- data, stages, caching, MLflow, waiting for the last
    trial, the report -- is the sweep's overhead."""

    wall_seconds: float
    workers: int
    model_seconds: float
    trials: int  # trials that ran in this run of the sweep

    @property
    def overhead_share(self) -> float:
        worker_seconds = self.wall_seconds * self.workers
        return max(0.0, 1.0 - self.model_seconds / worker_seconds) if worker_seconds > 0 else 0.0

    def metrics(self) -> dict[str, float]:
        return {"sweep_wall_seconds": self.wall_seconds, "sweep_model_seconds": self.model_seconds,
                "sweep_overhead_share": self.overhead_share, "sweep_trials_run": self.trials}

    def describe(self) -> str:
        minutes, seconds = divmod(round(self.wall_seconds), 60)
        if not self.trials:
            return f"Time: {minutes} min {seconds} s; no trial needed running"
        return (f"Time: {minutes} min {seconds} s wall, {self.workers} worker(s); "
                f"{1 - self.overhead_share:.0%} of worker time in training and scoring "
                f"({self.overhead_share:.0%} outside: data, stages, logging, waiting, report)")


def sweep_timing(records: list[TrialRecord], *, since: datetime, wall_seconds: float,
                 workers: int) -> SweepTiming:
    """SweepTiming from the trials that started since `since` (this run of the sweep)."""
    since_ms = since.timestamp() * 1000
    ran = [r for r in records if r.status == "FINISHED" and r.start_time >= since_ms]
    model = sum(r.metrics.get(name, 0.0) for r in ran for name in COST_METRICS)
    return SweepTiming(wall_seconds=wall_seconds, workers=workers, model_seconds=model,
                       trials=len(ran))


LOG_PREFIX = ""  # "[worker 2] " in a local worker process


def log(message: str) -> None:
    print(f"{LOG_PREFIX}{message}" if message else message, flush=True)


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
        self.ordinal = {t.key: i for i, t in enumerate(plan.trials, start=1)}
        self.tracker = tracker
        self.parent_run_id = parent_run_id
        self.progress = progress
        self.identity = ""  # "host:pid" in a worker process (search samplers differ per worker)
        self.machine = machine()
        self.cache = StageCache(config.cache_dir / "stages")
        self.stages = Stages(config=config, cache=self.cache, data=data)
        self.loaded: LoadedModel | None = None
        self.checkers: dict[str, LoadedModel] = {}
        self.done = 0

    def _load(self, spec: TrialSpec, name: str) -> LoadedModel:
        model_config = spec.config.model.model_copy(update={"name": name})
        return load_base_model(model=model_config, corpus=self.data.corpus(),
                               cache_dir=self.config.cache_dir / "models")

    def model(self, spec: TrialSpec) -> LoadedModel:
        if self.loaded is None or self.loaded.name != spec.model:
            if self.loaded is not None:  # another base model: free the old one first
                self.loaded = None
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            log(f"Loading base model {spec.model} ...")
            started = time.perf_counter()
            self.loaded = self._load(spec, spec.model)
            log(f"Loaded base model {spec.model} in {time.perf_counter() - started:.1f} s")
        return self.loaded

    def checker(self, spec: TrialSpec, name: str | None) -> LoadedModel:
        """A checker model: the trial's own base model unless the YAML names another."""
        if name is None or name == spec.model:
            return self.model(spec)
        if name not in self.checkers:
            log(f"Loading checker model {name} ...")
            self.checkers[name] = self._load(spec, name)
        return self.checkers[name]

    def run(self, spec: TrialSpec, trial: optuna.Trial | None, *, position: str) -> float:
        """Run one trial (or reuse its finished MLflow run); returns its F1."""
        sweep = self.config.name
        finished = self.tracker.finished_run(sweep, spec.key)
        if finished is not None:
            log(f"[{position}] {spec.name}: already finished in MLflow (run {finished.info.run_id[:8]})")
            return float(finished.data.metrics.get("f1", 0.0))
        live = ({str(t.number) for t in trial.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                 if t.number != trial.number} if trial is not None else set())
        self.tracker.close_stale_runs(sweep, spec.key, live_trials=live)
        search = spec.role == "search"
        sets = self.stages.evaluation_sets(self.data.tasks[spec.task],
                                           heldout_language=spec.heldout_language,
                                           truth=self.data.truth.get(spec.task), search=search)
        record = TrialRecord.from_spec(spec, eval_split=sets.eval_name, train_rows=len(sets.train),
                                       eval_rows=len(sets.evaluation))
        params, _, tags = record.to_mlflow()
        tags.update({"harness.version": __version__, MACHINE_TAG: self.machine,
                     "harness.optuna_trial": str(trial.number) if trial is not None else ""})
        run_id = self.tracker.start_trial(sweep=sweep, parent_run_id=self.parent_run_id,
                                          name=spec.name, tags=tags)
        if trial is not None:
            trial.set_user_attr("mlflow_run_id", run_id)
        self.tracker.log_params(run_id, params)
        log(f"[{position}] {spec.name}: {len(sets.train)} train rows, {len(sets.evaluation)} "
            f"{sets.eval_name} rows")
        hits_before, misses_before = self.cache.totals()
        hook = None
        if trial is not None and search:  # only a search's own trials are ever pruned
            def hook(epoch: int, loss: float, f1: float) -> None:
                trial.report(f1, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after epoch {epoch + 1} (F1 {f1:.4f})")
        try:
            outcome = run_trial(spec, sets=sets, stages=self.stages, loaded=self.model(spec),
                                tracker=self.tracker, run_id=run_id, progress=self.progress,
                                epoch_hook=hook, checker=lambda name=None: self.checker(spec, name))
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
            message = error_message(error)
            if trial is not None:
                trial.set_user_attr(ERROR_ATTR, message[:2000])
            self.tracker.end_trial(run_id, status="FAILED",
                                   error=message + "\n" + mask(traceback.format_exc(limit=8)))
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
        if outcome.degenerate:
            log(f"[{position}] {spec.name}: WARNING: learned nothing: {outcome.degenerate}")
        return float(m["f1"])

    def objective(self):
        total = len(self.specs)

        def objective(trial: optuna.Trial) -> float:
            key = trial.user_attrs.get(KEY_ATTR)
            if key is None:  # another worker took the last queued trial
                trial.set_user_attr("harness.empty", True)
                trial.study.stop()
                raise optuna.TrialPruned("no queued trial left")
            if key not in self.specs:
                message = f"trial key {key} is not in this sweep's plan (config changed?)"
                trial.set_user_attr(ERROR_ATTR, message)
                raise RuntimeError(message)
            mark_worker(trial)
            self.done += 1
            return self.run(self.specs[key], trial, position=f"trial {self.ordinal[key]}/{total}")
        return objective


# -------------------------------------------------------------------------- driver


def print_plan(config: SweepConfig, plan: Plan, *, url: str, tracking_uri: str,
               estimate: str) -> None:
    models = models_of(config)
    log(f"Sweep '{config.name}': design {config.design.kind}, {len(plan.configurations)} "
        f"configurations, {len(plan.trials)} trials (tasks {', '.join(config.tasks)}, "
        f"seeds {config.seeds.values}, models {models})")
    if config.design.kind == "fractional":
        log(plan.description)
    for spec in plan.trials:
        stages = ["data", *spec.components, "prompts", "train", "score"]
        extra = f" heldout={spec.heldout_language}" if spec.heldout_language else ""
        log(f"  {spec.key}  {spec.model}  {spec.task}  {spec.label:<28} seed={spec.seed}{extra}  "
            f"stages: {' -> '.join(stages)}")
    if config.design.kind == "optuna":
        log(f"  + an Optuna search of {config.design.optuna.n_trials} trials for each of the "
            f"{len(plan.trials)} configurations above ({config.design.optuna.sampler}, pruner "
            f"{config.design.optuna.pruner}), then its best configuration scored once")
    log(estimate)
    log(f"Study storage: {mask(url)}")
    log(f"MLflow: {mask(tracking_uri)}")


def _dry_run(config: SweepConfig, plan: Plan, data: PreparedData, *, url: str,
             tracking_uri: str) -> SweepSummary:
    """Print the plan and its estimate; write nothing (no study, no MLflow store, no cache)."""
    tracker = Tracker.existing(uri=tracking_uri, experiment=config.tracking.experiment or config.name)
    records = trial_records(tracker, config.name) if tracker else []   # every scale and data
    finished = {r.key for r in records if r.key in plan.keys}
    estimate = estimate_line(config, plan, data, records, finished_keys=finished)
    print_plan(config, plan, url=url, tracking_uri=tracking_uri, estimate=estimate)
    return SweepSummary(planned=len(plan.trials), finished=len(finished), tracking_uri=tracking_uri)


def run_sweep(config: SweepConfig, *, dry_run: bool = False, retry_failed: bool = False,
              storage: str | None = None, progress: bool = True, report: bool = True,
              workers: int = 1) -> SweepSummary:
    """Run (or resume) the sweep; returns what happened. Raises HarnessError on bad input.

    `report=False` is a worker (`harness worker`, or a child of `--workers N`): it joins the
    sweep's parent run, works until no trial is waiting or running, and writes no report.
    `workers` > 1 starts that many local worker processes in all, this one included."""
    # Our own lines report trials; Optuna would add a traceback per failed or interrupted trial.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    clock = (datetime.now(UTC), time.perf_counter())
    url = storage_url(config, storage)
    tracking_uri = resolve_tracking_uri(config.tracking.uri)
    if dry_run:
        data = prepare_data(config, load=False)
        plan = build_plan(config, data_fingerprints=data.fingerprints)
        return _dry_run(config, plan, data, url=url, tracking_uri=tracking_uri)

    queued = plan_and_queue(config, url=url, tracking_uri=tracking_uri, retry_failed=retry_failed)
    if report:
        log(queued.data.describe())
    try:
        return _run(config, queued, url=url, progress=progress, report=report, workers=workers,
                    clock=clock)
    except BaseException:
        queued.tracker.finish_sweep(queued.parent, failed=True)
        raise


@dataclass
class Queued:
    """What planning leaves behind: the sweep's data, plan, study, parent run and queue counts."""

    data: PreparedData
    plan: Plan
    study: optuna.Study
    tracker: Tracker
    parent: str
    counts: dict[str, int]
    recovered: int


def plan_and_queue(config: SweepConfig, *, url: str, tracking_uri: str,
                   retry_failed: bool = False) -> Queued:
    """Prepare the data, open the study and the parent run, and enqueue the plan's trials.

    Everything that creates shared state (schema, experiment, parent run, queue)
    happens under one lock, so any number of processes started together plan once. (The data
    comes first, outside it: bad data fails before anything is written, and the built-in
    benchmark is generated atomically anyway.)"""
    data = prepare_data(config)
    plan = build_plan(config, data_fingerprints=data.fingerprints)
    with planning_lock(url, config.name):
        study = open_study(config, url=url, name=config.name)  # a bad URL fails before MLflow
        tracker = Tracker(uri=tracking_uri, experiment=config.tracking.experiment or config.name)
        parent = tracker.sweep_run(
            config.name, plan_hash=stable_hash(sorted(t.key for t in plan.trials)),
            params={"config": masked_json(config), "design": config.design.kind},
            artifacts={"config.json": masked_json(config, indent=2)})
        tracker.set_experiment_tags(experiment_tags(
            config.name, [*config.design.always_on, *config.design.switches]))
        optuna.storages.fail_stale_trials(study)  # other hosts' dead workers (heartbeat)
        recovered = recover_orphans(study)
        order = longest_first(plan.trials, tracker.measured_seconds(config.name))
        counts = enqueue_plan(study, order, retry_failed=retry_failed)
    return Queued(data, plan, study, tracker, parent, dict(counts), recovered)


def _log_sweep_inputs(config: SweepConfig, data: PreparedData, tracker: Tracker, parent: str) -> None:
    tracker.log_text(parent, data.describe(), "data_summary.txt")
    tracker.set_tags(parent, {f"harness.data.fingerprint.{task}": value
                              for task, value in data.fingerprints.items()}
                     | {"harness.data.directory": str(data.directory)})
    tracker.log_metrics(parent, data.dropped_counts())


def _run(config: SweepConfig, queued: Queued, *, url: str, progress: bool, report: bool,
         workers: int, clock: tuple[datetime, float]) -> SweepSummary:
    started = clock[0]
    data, plan, study, tracker, parent = (queued.data, queued.plan, queued.study, queued.tracker,
                                          queued.parent)
    counts, recovered = Counter(queued.counts), queued.recovered
    _log_sweep_inputs(config, data, tracker, parent)
    log(f"Plan: {len(plan.trials)} trials — {counts['finished']} already finished, "
        f"{counts['enqueued'] + counts['queued']} to run"
        + (f", {counts['failed']} failed earlier (rerun them with --retry-failed)" if counts["failed"] else "")
        + (f"; {recovered} interrupted trial(s) re-queued" if recovered else ""))
    worker = Worker(config=config, data=data, plan=plan, tracker=tracker, parent_run_id=parent,
                    progress=progress and workers == 1)
    if not report:
        worker.identity = f"{socket.gethostname()}:{os.getpid()}"
    children = []
    if workers > 1 and counts["enqueued"] + counts["queued"] > 1:
        share_cores(workers, config.model.name)
        warning = oversubscription(workers, config.model.cpu_threads, os.cpu_count())
        if warning and not torch.cuda.is_available():
            log(warning)
        children = start_local_workers(config, url=url, count=workers)
        log(f"Started {len(children)} more local worker(s): pids "
            + ", ".join(str(p.pid) for p in children))
    interrupted = False
    searches: list[SearchOutcome] = []
    try:
        drain(study, worker.objective(), url=url,
              poll_seconds=min(5.0, config.study.heartbeat_interval))
        if config.design.kind == "optuna":
            searches = run_search(config, plan, worker=worker, url=url, log=log)
    except KeyboardInterrupt:
        interrupted = True
        _exit_on_second_interrupt()
        stop_local_workers(children)
        log("Interrupted: the running trial is marked KILLED; rerun the same command to resume.")
    problems = join_local_workers(children)
    for problem in problems:
        log(f"WARNING: local worker {problem}; its trial goes back to the queue on the next run")
    failed = [(worker.specs[k].name, error) for k, error in failures(study, worker.specs).items()]
    failed += [item for outcome in searches for item in outcome.failed]
    if interrupted or not unfinished(study):  # the last worker out closes the parent run
        tracker.finish_sweep(parent, failed=bool(failed) or interrupted)
    if interrupted:
        raise KeyboardInterrupt
    records = trial_records(tracker, config.name, statuses=("FINISHED", "KILLED"))
    records = [r for r in records if plan.owns(r)]
    finished = [r for r in records if r.status == "FINISHED"]
    searched = sum(config.design.optuna.n_trials + 1 for _ in searches)
    summary = SweepSummary(planned=len(plan.trials) + searched, finished=len(finished),
                           failed=failed, tracking_uri=tracker.uri,
                           dashboard=dashboard_lines(tracker.uri, tracker.experiment_id, config.name),
                           cache_counts=worker.cache.counts(),
                           pruned=sum(r.pruned for r in records),
                           per_worker=dict(trials_per_worker(study, worker.specs, since=started)))
    if report and finished:
        load_predictions(tracker, [r for r in finished if r.role == "planned"])
        files = write_report(config, plan=plan, records=records, data=data,
                             load_history=tracker.metric_history, load_frame=tracker.load_frame)
        summary.report, summary.headline = files.markdown, files.headline
        summary.outputs = [s.describe() for s in files.submissions]
        summary.outputs += [f"Submission archive: {a}" for a in files.archives]
        if files.submission_problem:
            summary.outputs.append(f"WARNING: no submission files: {files.submission_problem}")
        tracker.log_report(parent, files)
    if report:
        summary.timing = sweep_timing(records, since=started,
                                      wall_seconds=time.perf_counter() - clock[1],
                                      workers=max(1, len(summary.per_worker)))
        tracker.log_metrics(parent, summary.timing.metrics())
    _print_summary(summary)
    return summary


def _print_summary(summary: SweepSummary) -> None:
    log("")
    pruned = f", {summary.pruned} search trial(s) pruned" if summary.pruned else ""
    log(f"Done: {summary.finished} of {summary.planned} trials finished{pruned}.")
    if len(summary.per_worker) > 1 and not LOG_PREFIX:  # the sweep process says it once
        log("Trials run by each worker: " + ", ".join(
            f"{where} {count}" for where, count in sorted(summary.per_worker.items())))
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
    if summary.headline:
        log("")
        log(summary.headline)
        log("")
    for line in summary.outputs:
        log(line)
    if summary.timing is not None:
        log(summary.timing.describe())
    if summary.report:
        log(f"Report: {summary.report}")
    if not LOG_PREFIX:
        for line in summary.dashboard:
            log(line)
    sys.stdout.flush()

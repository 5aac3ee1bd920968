"""The Optuna study that queues a sweep's trials, through Optuna's public API only.

Design configurations are enqueued up front (`enqueue_trial` with the trial key as a user
attribute); any number of workers pull them with `study.optimize`, and a rerun skips finished
trials and re-queues interrupted ones. The main study never prunes: pruning belongs to search
studies, which compare trials of one configuration only.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import optuna
import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from harness.config import SweepConfig
from harness.errors import HarnessError
from harness.plan import TrialSpec
from harness.secrets import mask, remember

KEY_ATTR = "trial_key"
ERROR_ATTR = "harness.error"
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class StorageError(HarnessError):
    """The study storage URL cannot be opened."""


def storage_url(config: SweepConfig, override: str | None) -> str:
    """The storage URL the sweep uses (nothing is created here)."""
    if override:
        return override
    if config.study.storage:
        return config.study.storage
    return f"sqlite:///{(config.cache_dir.parent / 'studies.db').resolve()}"


def _serialise_sqlite(storage: RDBStorage) -> None:
    """Make every SQLite transaction take the write lock when it begins (BEGIN IMMEDIATE).

    Optuna pops a queued trial by reading it as WAITING and writing RUNNING in one transaction.
    PostgreSQL's row lock (SELECT ... FOR UPDATE) makes that exclusive; SQLite ignores FOR UPDATE
    and starts transactions deferred, so two processes could both read WAITING and both run the
    trial. Taking the lock at BEGIN serialises the read with the write."""
    engine = storage.engine

    @sqlalchemy.event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, _record) -> None:  # noqa: ANN001 - DBAPI objects
        dbapi_connection.isolation_level = None  # SQLAlchemy, not sqlite3, emits BEGIN

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:  # noqa: ANN001
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # pooled connections were opened before the hooks: open new ones


def rdb_storage(config: SweepConfig, url: str) -> RDBStorage:
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    remember(url)
    sqlite = url.startswith("sqlite:///")
    if sqlite:
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        storage = RDBStorage(
            url, engine_kwargs={"connect_args": {"timeout": 60}} if sqlite else None,
            heartbeat_interval=config.study.heartbeat_interval,
            grace_period=config.study.grace_period,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                max_retry=config.study.max_retry))
    except Exception as error:  # noqa: BLE001 - SQLAlchemy raises many kinds; one line for all
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StorageError(f"--storage / study.storage {mask(url)!r}: cannot open the study "
                           f"storage ({mask(first)}); expected a SQLAlchemy URL such as "
                           "sqlite:///path/studies.db or postgresql://user:pass@host/db") from None
    if sqlite:
        _serialise_sqlite(storage)
    return storage


@contextlib.contextmanager
def planning_lock(url: str, name: str) -> Iterator[None]:
    """Hold the one lock that serialises planning across processes and machines.

    Creating the schema, creating the sweep's parent run, recovering orphans and enqueueing the
    plan all happen under it, so any number of `sweep`/`worker` processes started together enqueue
    each configuration once. SQLite: an exclusive `flock` on a file beside the database (one
    machine, the only place SQLite works). PostgreSQL: a session advisory lock keyed by the study
    name, held on its own connection. Other databases get no lock."""
    remember(url)
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{path}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    if not url.startswith(("postgresql", "postgres")):
        yield
        return
    key = int.from_bytes(hashlib.sha256(f"harness:{name}".encode()).digest()[:8], "big", signed=True)
    try:
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        connection = engine.connect()
    except Exception as error:  # noqa: BLE001 - one line for every driver error
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StorageError(f"--storage / study.storage {mask(url)!r}: cannot connect "
                           f"({mask(first)})") from None
    try:
        connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
        yield
    finally:
        with contextlib.suppress(Exception):
            connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        connection.close()
        engine.dispose()


def open_study(config: SweepConfig, *, url: str, name: str,
               sampler: optuna.samplers.BaseSampler | None = None,
               pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """Open (or create) a study; the main study gets no pruner."""
    return optuna.create_study(study_name=name, storage=rdb_storage(config, url), load_if_exists=True,
                               direction="maximize",
                               sampler=sampler or optuna.samplers.RandomSampler(seed=0),
                               pruner=pruner or optuna.pruners.NopPruner())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_worker(trial: optuna.Trial) -> None:
    """Record which process runs `trial`, for orphan recovery."""
    trial.set_user_attr("harness.host", socket.gethostname())
    trial.set_user_attr("harness.pid", os.getpid())


def recover_orphans(study: optuna.Study, *, requeue: bool = True) -> int:
    """Fail RUNNING trials whose process on this host is gone (kill -9, reboot) and, for a queue
    study, enqueue their configuration again. Other hosts' trials are left to the heartbeat."""
    host = socket.gethostname()
    recovered = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = trial.user_attrs
        if attrs.get("harness.host") != host or _pid_alive(int(attrs.get("harness.pid", -1))):
            continue
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        if requeue and KEY_ATTR in attrs:
            study.enqueue_trial({}, user_attrs={KEY_ATTR: attrs[KEY_ATTR]})
        recovered += 1
    return recovered


def _interrupted(trial: optuna.trial.FrozenTrial) -> bool:
    """A FAIL without an error message was interrupted (Ctrl-C, a dead process), not broken."""
    return trial.state == TrialState.FAIL and ERROR_ATTR not in trial.user_attrs


def longest_first(trials: Sequence[TrialSpec], measured: Mapping[tuple[str, str, str], float]) -> list[str]:
    """Trial keys in the order workers pull them: by estimated seconds, longest first, so N
    workers finish close together. The estimate is the measured mean cost of the trial's
    (model, task, configuration) — from its other seeds or earlier runs of the sweep — else the
    mean measured cost of its task (an unmeasured configuration is taken as typical); with no
    measurement at all, plan order. Ties keep plan order."""
    by_task: dict[str, list[float]] = {}
    for (_, task, _), seconds in measured.items():
        by_task.setdefault(task, []).append(seconds)

    def estimate(trial: TrialSpec) -> float:
        known = measured.get((trial.model, trial.task, trial.label))
        if known is not None:
            return known
        same_task = by_task.get(trial.task)
        return sum(same_task) / len(same_task) if same_task else 0.0

    return [t.key for t in sorted(trials, key=estimate, reverse=True)]  # sorted() is stable


def enqueue_plan(study: optuna.Study, keys: Iterable[str], *, retry_failed: bool) -> Counter[str]:
    """Put every trial not yet done or queued in front of the workers; returns counts by outcome."""
    states: dict[str, set[TrialState]] = {}
    interrupted: set[str] = set()
    for trial in study.get_trials(deepcopy=False):
        key = trial.user_attrs.get(KEY_ATTR)
        if key:
            states.setdefault(key, set()).add(trial.state)
            if _interrupted(trial):
                interrupted.add(key)
    counts: Counter[str] = Counter()
    for key in keys:
        seen = states.get(key, set())
        if seen & {TrialState.COMPLETE, TrialState.PRUNED}:
            counts["finished"] += 1
        elif seen & {TrialState.WAITING, TrialState.RUNNING}:
            counts["queued"] += 1
        elif TrialState.FAIL in seen and not retry_failed and key not in interrupted:
            counts["failed"] += 1
        else:
            study.enqueue_trial({}, user_attrs={KEY_ATTR: key})
            counts["enqueued"] += 1
    return counts


def stop_when_queue_empty(study: optuna.Study, _trial: optuna.trial.FrozenTrial) -> None:
    if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        study.stop()


def drain(study: optuna.Study, objective: Callable[[optuna.Trial], float], *, url: str,
          poll_seconds: float = 5.0) -> None:
    """Run queued trials until none is waiting and none is running anywhere.

    A worker whose queue is empty waits while other workers' trials run: if one of them dies, the
    heartbeat (or, on this host, the dead PID) fails it, the retry callback or `recover_orphans`
    queues it again, and this worker runs it."""
    while True:
        if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            study.optimize(objective, callbacks=[stop_when_queue_empty], catch=(Exception,),
                           gc_after_trial=True)
            continue
        with planning_lock(url, study.study_name):  # recovery enqueues: one process at a time
            optuna.storages.fail_stale_trials(study)  # heartbeat: other hosts' dead workers
            recover_orphans(study)  # this host's dead workers (no heartbeat needed)
        if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            continue
        if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            return
        time.sleep(poll_seconds)


def unfinished(study: optuna.Study) -> bool:
    """Whether any trial is still waiting or running (in any process)."""
    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING)))


def failures(study: optuna.Study, keys: Iterable[str]) -> dict[str, str]:
    """Key -> error of each trial whose latest attempt failed with an error."""
    wanted = set(keys)
    latest: dict[str, optuna.trial.FrozenTrial] = {}
    for trial in study.get_trials(deepcopy=False):
        key = trial.user_attrs.get(KEY_ATTR)
        if key in wanted:
            latest[key] = trial
    return {k: t.user_attrs.get(ERROR_ATTR, "failed") for k, t in latest.items()
            if t.state == TrialState.FAIL}


__all__ = ["KEY_ATTR", "StorageError", "drain", "enqueue_plan", "failures", "mark_worker",
           "open_study", "planning_lock", "recover_orphans", "stop_when_queue_empty",
           "storage_url", "unfinished"]

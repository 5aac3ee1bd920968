"""Local workers: `sweep --workers N` runs N processes that pull trials from one study.

The sweep process plans, enqueues and then works itself; it starts N-1 more processes (spawned,
so each has its own interpreter, torch threads and base model) that join the same study exactly
as `python -m harness worker` on another machine does. With GPUs each child sees one device
(`CUDA_VISIBLE_DEVICES`); on the CPU the cores are split between the processes (the built-in tiny
model is single-threaded anyway).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from multiprocessing.process import BaseProcess

import optuna
from optuna.trial import TrialState

from harness.config import SweepConfig
from harness.study import KEY_ATTR


def _child(raw_config: dict, url: str, index: int, count: int) -> None:
    import torch  # the child's own torch: set devices and threads before any model exists

    from harness import sweep
    from harness.config import parse_config

    config = parse_config(raw_config, source="worker config")

    gpus = torch.cuda.device_count()
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(index % gpus)
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // count))
    sweep.LOG_PREFIX = f"[worker {index}] "
    try:
        summary = sweep.run_sweep(config, storage=url, progress=False, report=False)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    raise SystemExit(1 if summary.failed else 0)


def start_local_workers(config: SweepConfig, *, url: str, count: int) -> list[BaseProcess]:
    """Start workers 1..count-1 (this process is worker 0)."""
    context = multiprocessing.get_context("spawn")
    processes = []
    for index in range(1, count):
        # The validated config goes as plain JSON data: its class may be a schema rebuilt for
        # registered plugin components, which pickle cannot name in a fresh interpreter.
        raw_config = config.model_dump(mode="json")
        process = context.Process(target=_child, args=(raw_config, url, index, count),
                                  name=f"harness-worker-{index}", daemon=False)
        process.start()
        processes.append(process)
    return processes


def share_cores(count: int, model_name: str) -> None:
    """This process's share of the CPU cores when it is one of `count` local workers."""
    import torch

    if count > 1 and model_name != "tiny" and not torch.cuda.is_available():
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // count))


def oversubscription(workers: int, cpu_threads: int | None, cores: int | None) -> str | None:
    """A warning when `workers` local processes with `cpu_threads` torch threads each ask for
    more threads than the machine has cores (on 2 cores, 2 workers x 2 threads made each tiny
    trial about 5x slower than 2 x 1)."""
    if workers < 2 or cpu_threads is None or cores is None or workers * cpu_threads <= cores:
        return None
    return (f"WARNING: {workers} workers x model.cpu_threads {cpu_threads} = "
            f"{workers * cpu_threads} threads on {cores} CPU cores; the threads contend and every "
            f"trial slows down: use model.cpu_threads {max(1, cores // workers)} or fewer workers")


def join_local_workers(processes: Iterable[BaseProcess]) -> list[str]:
    """Wait for the children; returns one line per child that did not exit cleanly."""
    problems = []
    for process in processes:
        process.join()
        if process.exitcode not in (0, 1):  # 1: some of its trials failed, reported per trial
            problems.append(f"{process.name} (pid {process.pid}) exited with code {process.exitcode}")
    return problems


def stop_local_workers(processes: Iterable[BaseProcess]) -> None:
    """Ctrl-C: ask each child to stop (it marks its running trial interrupted), then wait."""
    for process in processes:
        if process.is_alive() and process.pid is not None:
            os.kill(process.pid, signal.SIGINT)
    for process in processes:
        process.join(30)
        if process.is_alive():
            process.kill()


def trials_per_worker(study: optuna.Study, keys: Iterable[str], *, since: datetime) -> Counter[str]:
    """'pid N' (or 'host pid N') -> how many of these keys' trials that process finished since
    `since` (this run of the sweep; Optuna keeps naive local times)."""
    wanted = set(keys)
    since_local = since.astimezone().replace(tzinfo=None)
    counts: Counter[str] = Counter()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        attrs = trial.user_attrs
        start = trial.datetime_start
        if attrs.get(KEY_ATTR) in wanted and start is not None and start >= since_local:
            host = attrs.get("harness.host", "?")
            where = f"pid {attrs.get('harness.pid', '?')}"
            counts[where if host == socket.gethostname() else f"{host} {where}"] += 1
    return counts


__all__ = ["join_local_workers", "oversubscription", "share_cores", "start_local_workers", "stop_local_workers",
           "trials_per_worker"]

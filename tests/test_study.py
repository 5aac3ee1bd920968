"""The study storage under several processes: every queued configuration is popped once."""

from __future__ import annotations

import multiprocessing
import socket
import time
from pathlib import Path

from optuna.trial import TrialState

from harness.config import parse_config
from harness.study import KEY_ATTR, drain, enqueue_plan, open_study


def _config(root: Path):
    return parse_config({"name": "s", "data": {"source": "synth"}, "tasks": ["QC"],
                         "design": {"kind": "grid", "switches": ["LT"]},
                         "study": {"storage": f"sqlite:///{root / 'study.db'}"},
                         "cache_dir": str(root / "cache"), "reports_dir": str(root / "reports")})


def _pop_all(root: str, out: str, start) -> None:  # noqa: ANN001 - a multiprocessing.Barrier
    config = _config(Path(root))
    study = open_study(config, url=config.study.storage, name="q")
    start.wait()
    popped = []
    while True:
        trial = study.ask()
        if KEY_ATTR not in trial.user_attrs:  # the queue is empty: Optuna made a fresh trial
            study.tell(trial, state=TrialState.FAIL)
            break
        popped.append(str(trial.number))
        study.tell(trial, 1.0, skip_if_finished=True)
        time.sleep(0.005)  # paced like a worker, so a loaded machine still interleaves the two
    Path(out).write_text("\n".join(popped))


def test_two_processes_never_pop_the_same_sqlite_trial(tmp_path):
    config = _config(tmp_path)
    study = open_study(config, url=config.study.storage, name="q")
    enqueue_plan(study, [f"k{i}" for i in range(150)], retry_failed=False)
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(2)  # both pop only once both have imported and opened the study
    outs = [tmp_path / f"popped{i}.txt" for i in range(2)]
    workers = [ctx.Process(target=_pop_all, args=(str(tmp_path), str(out), start)) for out in outs]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    popped = [n for out in outs for n in out.read_text().split()]
    assert len(popped) == len(set(popped)) == 150
    assert all(out.read_text() for out in outs), "both processes should have taken trials"


def test_a_dead_workers_trial_is_run_again_before_the_last_worker_exits(tmp_path):
    config = _config(tmp_path)
    url = config.study.storage
    study = open_study(config, url=url, name="q")
    enqueue_plan(study, ["k0"], retry_failed=False)
    dead = multiprocessing.get_context("spawn").Process(target=int)
    dead.start()
    dead.join()
    popped = study.ask()  # a worker took k0 and then died (kill -9)
    popped.set_user_attr("harness.host", socket.gethostname())
    popped.set_user_attr("harness.pid", dead.pid)
    ran = []

    def objective(trial):
        ran.append(trial.user_attrs.get(KEY_ATTR))
        return 1.0

    drain(study, objective, url=url, poll_seconds=0.1)
    assert ran == ["k0"]
    states = sorted(t.state.name for t in study.get_trials(deepcopy=False))
    assert states == ["COMPLETE", "FAIL"]


def test_stale_run_cleanup_leaves_a_live_workers_run_alone(tmp_path):
    from harness.tracking import Tracker

    tracker = Tracker(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="e")
    parent = tracker.sweep_run("s", plan_hash="p", params={})
    runs = {number: tracker.start_trial(sweep="s", parent_run_id=parent, name=f"t{number}",
                                        tags={"harness.trial_key": "k",
                                              "harness.optuna_trial": number})
            for number in ("3", "5")}
    assert tracker.close_stale_runs("s", "k", live_trials={"5"}) == 1
    status = {n: tracker.client.get_run(r).info.status for n, r in runs.items()}
    assert status == {"3": "KILLED", "5": "RUNNING"}


def test_waiting_trials_are_pulled_longest_first_by_measured_cost(tmp_path):
    from harness.plan import build_plan
    from harness.study import longest_first

    config = parse_config({"tasks": ["QC", "QI"], "seeds": [0, 1],
                           "design": {"kind": "grid", "switches": ["LT"]},
                           "study": {"storage": f"sqlite:///{tmp_path / 'study.db'}"}})
    plan = build_plan(config, data_fingerprints={"QC": "qc", "QI": "qi"})
    model = plan.trials[0].model
    assert longest_first(plan.trials, {}) == [t.key for t in plan.trials]  # nothing measured
    measured = {(model, "QC", "baseline"): 10.0, (model, "QC", "LT"): 30.0, (model, "QI", "LT"): 50.0}
    order = longest_first(plan.trials, measured)
    labels = [(t.task, t.label) for t in sorted(plan.trials, key=lambda t: order.index(t.key))]
    # QI baseline is unmeasured: its task's mean (50) stands in; ties keep plan order (seeds)
    assert labels == [("QI", "baseline")] * 2 + [("QI", "LT")] * 2 + [("QC", "LT")] * 2 \
        + [("QC", "baseline")] * 2
    study = open_study(config, url=config.study.storage, name="order")
    enqueue_plan(study, order, retry_failed=False)
    popped = [study.ask().user_attrs[KEY_ATTR] for _ in order]
    assert popped == order  # workers pop in enqueue order

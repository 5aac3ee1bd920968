"""The study storage under several processes: every queued configuration is popped once."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from optuna.trial import TrialState

from harness.config import parse_config
from harness.study import KEY_ATTR, enqueue_plan, open_study


def _config(root: Path):
    return parse_config({"name": "s", "data": {"source": "synth"}, "tasks": ["QC"],
                         "design": {"kind": "grid", "switches": ["LT"]},
                         "study": {"storage": f"sqlite:///{root / 'study.db'}"},
                         "cache_dir": str(root / "cache"), "reports_dir": str(root / "reports")})


def _pop_all(root: str, out: str, start) -> None:  # noqa: ANN001 - a multiprocessing.Event
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
    Path(out).write_text("\n".join(popped))


def test_two_processes_never_pop_the_same_sqlite_trial(tmp_path):
    config = _config(tmp_path)
    study = open_study(config, url=config.study.storage, name="q")
    enqueue_plan(study, [f"k{i}" for i in range(150)], retry_failed=False)
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    outs = [tmp_path / f"popped{i}.txt" for i in range(2)]
    workers = [ctx.Process(target=_pop_all, args=(str(tmp_path), str(out), start)) for out in outs]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    popped = [n for out in outs for n in out.read_text().split()]
    assert len(popped) == len(set(popped)) == 150
    assert all(out.read_text() for out in outs), "both processes should have taken trials"

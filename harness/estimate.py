"""The dry run's cost estimate: per-row rates measured by finished trials, times the rows of the
trials still to run.

A finished trial logs its training rate (examples x epochs per second) and its scoring rate
(evaluation rows per second). Prompt length, and so the rate, depends on the model, the task and
the prompt components (ICL, CoT), so rates are kept per (model, task, prompt components) and
fall back to (model, task). The rows come from the planned data (line counts, or the built-in
benchmark's sizes), not from the measured trials, so a small sweep's rates estimate the same
sweep at full scale. Rates are only as good as the machine they were measured on: the line
names it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.components import REGISTRY
from harness.config import SweepConfig
from harness.data import split_file_name
from harness.data.prepare import PreparedData
from harness.plan import Plan, TrialSpec
from harness.record import TrialRecord


@dataclass(frozen=True)
class Rate:
    """Seconds per training example-epoch and per scored row, from `trials` finished trials."""

    train: float
    score: float
    trials: int
    machines: tuple[str, ...]


@dataclass(frozen=True)
class TaskRows:
    train: int
    evaluation: int
    unlabelled: int   # dev/test rows a submission predicts


def _prompt_components(components: Sequence[str]) -> tuple[str, ...]:
    return tuple(c.name for c in REGISTRY.of_stage("prompt", tuple(components)))


def measured_rates(records: Sequence[TrialRecord]) -> dict[tuple, Rate]:
    """Mean per-example seconds of finished trials, by (model, task, prompt components) and by
    (model, task)."""
    samples: dict[tuple, list[tuple[float, float, str]]] = {}
    for record in records:
        metrics = record.metrics
        if record.status != "FINISHED" or not metrics.get("train_examples_per_second") \
                or not metrics.get("score_examples_per_second"):
            continue
        sample = (1 / metrics["train_examples_per_second"], 1 / metrics["score_examples_per_second"],
                  record.machine)
        prompt = _prompt_components(record.components)
        for key in ((record.model, record.task, prompt), (record.model, record.task)):
            samples.setdefault(key, []).append(sample)
    return {key: Rate(train=sum(s[0] for s in rows) / len(rows),
                      score=sum(s[1] for s in rows) / len(rows), trials=len(rows),
                      machines=tuple(sorted({s[2] for s in rows if s[2]})))
            for key, rows in samples.items()}


def _lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def _labelled(path: Path) -> bool:
    """Whether the file's first row carries a label (the competition's dev/test do not)."""
    with path.open(encoding="utf-8") as handle:
        first = next((line for line in handle if line.strip()), "")
    try:
        return json.loads(first).get("label") is not None if first else False
    except (json.JSONDecodeError, AttributeError):
        return False


def _split_sizes(config: SweepConfig, data: PreparedData, task: str) -> dict[str, tuple[int, bool]]:
    """(rows, labelled) of each present split of `task`, without loading the data."""
    if config.data.source == "synth":
        from harness.data.synth import split_rows
        return {split: (split_rows(config.data.synth.scale, split, task), True)
                for split in ("train", "dev", "test")}
    sizes = {}
    for split in ("train", "dev", "test"):
        path = Path(data.directory) / split_file_name(split, task)
        if path.exists():
            sizes[split] = (_lines(path), split == "train" or _labelled(path))
    return sizes


def task_rows(config: SweepConfig, data: PreparedData, task: str) -> TaskRows:
    """Training, evaluation and unlabelled rows of a trial of `task`, as `Stages` chooses them
    (the grouped holdout taken as exactly its fraction)."""
    sizes = _split_sizes(config, data, task)
    train = sizes.get("train", (0, True))[0]
    choice = config.data.eval.split
    if choice == "auto":
        choice = next((s for s in ("test", "dev") if sizes.get(s, (0, False))[1]), "holdout")
    if choice == "holdout":
        evaluation = round(train * config.data.eval.holdout_fraction)
        train -= evaluation
    else:
        evaluation = sizes.get(choice, (0, True))[0]
    if config.data.max_train_rows is not None:
        train = min(train, config.data.max_train_rows)
    unlabelled = sum(rows for split, (rows, labelled) in sizes.items()
                     if split != "train" and not labelled) if config.scoring.predict_unlabelled else 0
    return TaskRows(train, evaluation, unlabelled)


def trial_seconds(spec: TrialSpec, rows: TaskRows, rates: dict[tuple, Rate]) -> float | None:
    """Training plus scoring seconds of one trial at the measured rates; None when nothing of
    its model and task has finished."""
    rate = rates.get((spec.model, spec.task, _prompt_components(spec.components))) \
        or rates.get((spec.model, spec.task))
    if rate is None:
        return None
    epochs = spec.config.training.epochs
    return rows.train * epochs * rate.train + (rows.evaluation + rows.unlabelled) * rate.score


def estimate_line(config: SweepConfig, plan: Plan, data: PreparedData,
                  records: Sequence[TrialRecord], *, finished_keys: set[str]) -> str:
    """The dry run's one-line estimate for the trials of `plan` not yet finished."""
    rates = measured_rates(records)
    todo = [t for t in plan.trials if t.key not in finished_keys]
    searched = (config.design.optuna.n_trials + 1) if config.design.kind == "optuna" else 0
    checker_fits = sum(REGISTRY[name].model_fits(getattr(t.config.components, name))
                       for t in todo for name in t.components)
    head = (f"Estimated cost: {len(todo)} of {len(plan.trials)} trials to run"
            + (f" (each with {searched - 1} search trials)" if searched else "")
            + (f", {checker_fits} QR checker fits" if checker_fits else ""))
    if not todo:
        return head + ": nothing"
    rows = {task: task_rows(config, data, task) for task in {t.task for t in todo}}
    seconds = [trial_seconds(t, rows[t.task], rates) for t in todo]
    unknown = sum(s is None for s in seconds)
    if unknown == len(todo):
        return head + "; duration unknown until a trial of the same model and task has finished"
    known = [s for s in seconds if s is not None]
    total = sum(known) * (1 + searched)
    # A checker fold trains on (folds - 1) / folds of the rows: about a trial's training time.
    total += checker_fits * (sum(known) / len(known))
    measured = sum(r.trials for key, r in rates.items() if len(key) == 2)
    machines = sorted({m for r in rates.values() for m in r.machines})
    sizes = ", ".join(f"{task} {r.train:,} train / {r.evaluation + r.unlabelled:,} scored rows"
                      for task, r in sorted(rows.items()))
    return (f"{head}: about {total / 60:.1f} min of training and scoring at most (checker fits "
            "are shared by trials with the same training rows)"
            + (f" for the {len(todo) - unknown} with a measured rate" if unknown else "")
            + f" ({sizes}; per-row rates of {measured} finished trials" + (f" on {'; '.join(machines)}" if machines else "") + ")")


__all__ = ["Rate", "TaskRows", "estimate_line", "measured_rates", "task_rows", "trial_seconds"]

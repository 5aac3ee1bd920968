"""Competition submission files from a sweep's predictions on the unlabelled dev/test rows.

For every unlabelled split S: `reports/<sweep>/S/submit_QC.txt` and `submit_QI.txt` (JSON Lines,
`{"id": ..., "prediction": 0|1}`, one per input row, in the input's order) and
`reports/<sweep>/submit_S.zip` holding both, as the competition took them. The predictions are
those of the best configuration on the evaluation rows (highest mean F1 over seeds; its seeds'
p(yes) averaged, then thresholded), or of one trial the user names by its key. Before anything
is written the ids are checked against the input file: every id once, nothing else.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.cache import atomic_write
from harness.config import SweepConfig
from harness.data.loader import LoadedSplit, write_jsonl
from harness.data.prepare import PreparedData
from harness.errors import HarnessError
from harness.record import TrialRecord

LoadFrame = Callable[[str, str], pd.DataFrame]  # (run id, artifact path) -> table


class SubmissionError(HarnessError):
    """The predictions do not cover the input's ids exactly."""


@dataclass
class Submission:
    split: str
    task: str
    source: str  # which configuration or trial the predictions come from
    frame: pd.DataFrame  # id, prediction in the input's order
    filled: int  # rows the loader dropped (no prediction): given the training majority label
    path: Path | None = None

    def describe(self) -> str:
        filled = (f"; {self.filled} row(s) the loader dropped get the training majority label"
                  if self.filled else "")
        return f"{self.path}: {len(self.frame)} predictions from {self.source}{filled}"


def unlabelled_splits(data: PreparedData, task: str) -> list[LoadedSplit]:
    task_data = data.tasks[task]
    return [s for s in (task_data.dev, task_data.test) if s is not None and not s.labelled]


def choose_trials(records: list[TrialRecord], task: str,
                  trial_keys: list[str] = ()) -> tuple[str, list[TrialRecord]]:
    """The trials whose predictions are submitted for `task`: the one of `trial_keys` (full keys
    or unique prefixes) that is a `task` trial, else the seeds of the best configuration
    (planned, every language trained)."""
    finished = [r for r in records if r.status == "FINISHED" and r.task == task]
    named = [r for r in finished if any(r.key.startswith(k) for k in trial_keys)]
    if len(named) > 1:
        raise SubmissionError(f"--submit names {len(named)} finished {task} trials "
                              f"({', '.join(r.name for r in named[:3])}); name one per task")
    if named:
        return f"trial {named[0].name} ({named[0].key[:12]})", named
    planned = [r for r in finished if r.role == "planned" and r.heldout_language is None]
    if not planned:
        raise SubmissionError(f"no finished {task} trial to submit")
    by_label: dict[str, list[TrialRecord]] = {}
    for record in planned:
        by_label.setdefault((record.model, record.label), []).append(record)
    best = max(by_label.values(), key=lambda rs: np.mean([r.metrics.get("f1", 0.0) for r in rs]))
    mean_f1 = np.mean([r.metrics.get("f1", 0.0) for r in best])
    return (f"{best[0].label} (model {best[0].model}, best mean F1 {mean_f1:.3f} over "
            f"{len(best)} seed(s))"), best


def build_submission(split: LoadedSplit, trials: list[TrialRecord], *, source: str,
                     load_frame: LoadFrame, threshold: float, majority: int) -> Submission:
    """The trials' predictions per id (several seeds: their mean p(yes), thresholded), checked
    against the input's ids."""
    frames = []
    for record in trials:
        try:
            frame = load_frame(record.run_id, f"predictions/unlabelled_{split.split}.csv")
        except Exception as error:  # noqa: BLE001 - a missing artifact, whatever the store says
            raise SubmissionError(f"trial {record.name} has no predictions for {split.path.name} "
                                  f"(scoring.predict_unlabelled off when it ran?): "
                                  f"{str(error).splitlines()[0] if str(error) else error!r}") from None
        frames.append(frame.set_index(frame["id"].astype(str)))
    for frame in frames:
        check_ids(frame.index, split)
    ids = split.frame["id"].astype(str)
    if len(frames) == 1:
        predictions = frames[0]["prediction"].reindex(ids).to_numpy(dtype=int)
    else:
        p_yes = pd.concat([f["p_yes"] for f in frames], axis=1).mean(axis=1)
        predictions = (p_yes.reindex(ids).to_numpy() >= threshold).astype(int)
    out = pd.DataFrame({"id": list(ids) + [str(i) for i in split.dropped_ids],
                        "prediction": list(predictions) + [majority] * len(split.dropped_ids)})
    out.attrs.update(split.frame.attrs)  # integer ids are written as integers
    return Submission(split.split, split.task, source, out, filled=len(split.dropped_ids))


def check_ids(predicted: pd.Index, split: LoadedSplit) -> None:
    """SubmissionError in one line unless the predictions cover exactly the input's scored ids
    (the rows the loader kept)."""
    duplicated = predicted[predicted.duplicated()]
    scored = list(split.frame["id"].astype(str))
    missing = sorted(set(scored) - set(predicted))
    extra = sorted(set(predicted) - set(scored))
    problems = []
    if len(duplicated):
        problems.append(f"{len(set(duplicated))} id(s) predicted twice (e.g. {duplicated[0]})")
    if missing:
        problems.append(f"{len(missing)} id(s) of the file without a prediction (e.g. {missing[0]})")
    if extra:
        problems.append(f"{len(extra)} predicted id(s) not in the file (e.g. {extra[0]})")
    if problems:
        raise SubmissionError(f"submission for {split.path.name} refused: " + "; ".join(problems)
                              + " — were the predictions made on another version of this file?")


def write_submissions(config: SweepConfig, *, records: list[TrialRecord], data: PreparedData,
                      load_frame: LoadFrame, trial_keys: list[str] = ()
                      ) -> tuple[list[Submission], list[Path]]:
    """Every unlabelled split's submission files and zip: (the submissions, the zip files).
    All are built and checked before the first file is written."""
    finished = [r for r in records if r.status == "FINISHED"]
    for key in trial_keys:
        if not any(r.key.startswith(key) for r in finished):
            raise SubmissionError(f"--submit {key}: no finished trial of this sweep has this key "
                                  "(the `harness.trial_key` tag in MLflow)")
    built: dict[str, list[Submission]] = {}
    for task in data.tasks:
        splits = unlabelled_splits(data, task)
        if not splits:
            continue
        source, trials = choose_trials(records, task, list(trial_keys))
        labels = data.tasks[task].train.frame["label"].dropna().astype(int)
        majority = int(labels.mode().iloc[0]) if len(labels) else 1
        for split in splits:
            built.setdefault(split.split, []).append(build_submission(
                split, trials, source=source, load_frame=load_frame,
                threshold=float(trials[0].params.get("scoring.threshold", config.scoring.threshold)),
                majority=majority))
    archives = []
    root = config.reports_dir / config.name
    for split, submissions in built.items():
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        for submission in submissions:
            submission.path = folder / f"submit_{submission.task}.txt"
            write_jsonl(submission.frame, submission.path)
            files.append(submission.path)
        archive = root / f"submit_{split}.zip"
        atomic_write(archive, lambda tmp, files=files: _zip(tmp, files))
        archives.append(archive)
    return [s for subs in built.values() for s in subs], archives


def _zip(archive: Path, files: list[Path]) -> None:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in files:
            bundle.write(path, arcname=path.name)

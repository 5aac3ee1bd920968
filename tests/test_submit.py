"""Submission files: every input id once, nothing else, or a one-line refusal."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from harness.data.loader import LoadedSplit
from harness.record import TrialRecord
from harness.submit import SubmissionError, build_submission, choose_trials


def _split(ids: list[str], dropped: tuple[str, ...] = ()) -> LoadedSplit:
    frame = pd.DataFrame({"id": ids, "language": "en", "origin_query": "q", "category_path": "c",
                          "label": pd.NA})
    return LoadedSplit(frame, Path("dev_QC.txt"), "dev", "QC", dropped_ids=dropped)


def _trial(name: str, seed: int, f1: float, label: str = "LT") -> TrialRecord:
    return TrialRecord(key=f"k-{name}", name=name, task="QC", components=(label,), seed=seed,
                       model="tiny", status="FINISHED", run_id=name, metrics={"f1": f1})


def _loader(tables: dict[str, pd.DataFrame]):
    return lambda run_id, artifact: tables[run_id]


def test_seeds_are_averaged_and_dropped_rows_get_the_majority_label():
    split = _split(["1", "2", "3"], dropped=("4",))
    tables = {"a": pd.DataFrame({"id": ["3", "1", "2"], "p_yes": [0.9, 0.2, 0.6], "prediction": [1, 0, 1]}),
              "b": pd.DataFrame({"id": ["1", "2", "3"], "p_yes": [0.4, 0.2, 0.3], "prediction": [0, 0, 0]})}
    submission = build_submission(split, [_trial("a", 0, 0.8), _trial("b", 1, 0.8)], source="LT",
                                  load_frame=_loader(tables), threshold=0.5, majority=1)
    assert list(submission.frame["id"]) == ["1", "2", "3", "4"]
    # mean p(yes): 1 -> 0.3, 2 -> 0.4, 3 -> 0.6; the dropped row 4 gets the majority label
    assert list(submission.frame["prediction"]) == [0, 0, 1, 1] and submission.filled == 1


@pytest.mark.parametrize("ids, problem", [
    (["1", "2"], "1 id(s) of the file without a prediction (e.g. 3)"),
    (["1", "2", "3", "9"], "1 predicted id(s) not in the file (e.g. 9)"),
    (["1", "2", "3", "3"], "1 id(s) predicted twice (e.g. 3)"),
])
def test_a_wrong_id_set_is_refused_in_one_line(ids, problem):
    table = pd.DataFrame({"id": ids, "p_yes": 0.7, "prediction": 1})
    with pytest.raises(SubmissionError) as error:
        build_submission(_split(["1", "2", "3"]), [_trial("a", 0, 0.8)], source="LT",
                         load_frame=_loader({"a": table}), threshold=0.5, majority=1)
    message = str(error.value)
    assert problem in message and "dev_QC.txt" in message and "\n" not in message


def test_the_best_configuration_is_chosen_by_mean_f1_over_seeds():
    records = [_trial("b0", 0, 0.90, "HCT"), _trial("b1", 1, 0.70, "HCT"),
               _trial("l0", 0, 0.85), _trial("l1", 1, 0.84)]
    source, trials = choose_trials(records, "QC")
    assert [t.name for t in trials] == ["l0", "l1"] and "LT" in source
    source, trials = choose_trials(records, "QC", ["k-b1"])
    assert [t.name for t in trials] == ["b1"]

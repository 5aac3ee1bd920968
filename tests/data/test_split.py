import numpy as np
import pandas as pd
import pytest

from harness.data.split import (
    holdout_split,
    leave_language_out,
    normalised_query,
    stratified_subsample,
)
from harness.errors import DataError


def make_frame(rows_per_language=None, seed=0):
    """Contract-shaped QI frame; every query occurs 1-3 times with case/space variants."""
    rows_per_language = rows_per_language or {"en": 600, "ja": 300, "th": 100}
    rng = np.random.default_rng(seed)
    records = []
    for language, n in rows_per_language.items():
        for i in range(n):
            query = f"{language} query {i // 3}"
            if i % 3 == 1:
                query = query.upper().replace(" ", "  ")
            records.append({"id": f"{language}{i}", "task": "QI", "language": language,
                            "origin_query": query, "item_title": f"title {i}",
                            "label": int(rng.random() < 0.6)})
    frame = pd.DataFrame(records)
    frame["label"] = frame["label"].astype("Int8")
    return frame


def test_normalised_query():
    frame = pd.DataFrame({"origin_query": ["Red  Shoes ", "red shoes", "RED\tshoes"]})
    assert normalised_query(frame).tolist() == ["red shoes"] * 3


def test_holdout_groups_queries_and_keeps_proportions():
    frame = make_frame()
    train, held = holdout_split(frame, fraction=0.2, seed=0)
    assert not set(normalised_query(train)) & set(normalised_query(held))
    assert sorted(train["id"].tolist() + held["id"].tolist()) == sorted(frame["id"])
    assert len(held) / len(frame) == pytest.approx(0.2, abs=0.02)
    share = held["language"].value_counts(normalize=True)
    assert share["en"] == pytest.approx(0.6, abs=0.03)
    assert share["ja"] == pytest.approx(0.3, abs=0.03)
    assert share["th"] == pytest.approx(0.1, abs=0.03)
    assert held["label"].mean() == pytest.approx(frame["label"].mean(), abs=0.03)
    assert isinstance(held.index, pd.RangeIndex) and str(held["label"].dtype) == "Int8"


def test_holdout_is_deterministic_per_seed():
    frame = make_frame()
    first = holdout_split(frame, fraction=0.25, seed=3)[1]["id"].tolist()
    assert holdout_split(frame, fraction=0.25, seed=3)[1]["id"].tolist() == first
    assert holdout_split(frame, fraction=0.25, seed=4)[1]["id"].tolist() != first
    assert len(first) / len(frame) == pytest.approx(0.25, abs=0.02)


def test_holdout_needs_labels_and_enough_queries():
    frame = make_frame()
    frame.loc[5, "label"] = pd.NA
    with pytest.raises(DataError, match="1 of 1,000 rows have none"):
        holdout_split(frame, fraction=0.2, seed=0)
    with pytest.raises(DataError, match="at least 5 distinct queries, found 2"):
        holdout_split(make_frame({"en": 6}), fraction=0.2, seed=0)


def test_subsample_is_stratified_and_exact():
    frame = make_frame({"en": 600, "ja": 300, "th": 100})
    sample = stratified_subsample(frame, n=100, seed=1)
    assert len(sample) == 100 and sample["id"].is_unique
    expected = (frame.groupby(["language", "label"]).size() / 10).round()
    got = sample.groupby(["language", "label"]).size()
    assert (got - expected).abs().max() <= 1
    assert sample["language"].value_counts().to_dict() == {"en": 60, "ja": 30, "th": 10}
    assert sample["id"].tolist() == stratified_subsample(frame, n=100, seed=1)["id"].tolist()
    # kept rows stay in file order
    positions = frame.reset_index().set_index("id").loc[sample["id"], "index"]
    assert positions.is_monotonic_increasing


def test_subsample_returns_frame_when_n_is_large():
    frame = make_frame({"en": 10})
    assert stratified_subsample(frame, n=10, seed=0) is frame
    assert stratified_subsample(frame, n=50, seed=0) is frame


def test_leave_language_out():
    frame = make_frame()
    rest, held = leave_language_out(frame, language="ja")
    assert set(held["language"]) == {"ja"} and len(held) == 300
    assert set(rest["language"]) == {"en", "th"} and len(rest) == 700
    with pytest.raises(DataError, match="no rows in language 'ko' .*en, ja, th"):
        leave_language_out(frame, language="ko")

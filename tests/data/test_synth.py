import json
import re
from collections import Counter

import numpy as np
import pytest
from sklearn.feature_extraction import FeatureHasher
from sklearn.linear_model import LogisticRegression

from harness.data import EVAL_LANGUAGES, SPLITS, TASKS, TRAIN_LANGUAGES, target_column
from harness.data.loader import load_directory
from harness.data.synth import generate, load_lexicon
from harness.errors import ConfigError

FILES = [f"{split}_{task}.txt" for task in TASKS for split in SPLITS]
POSITIVE_KINDS = {"exact", "synonym", "translation", "brand"}
NEGATIVE_KINDS = {"sibling", "cousin", "random", "attribute", "symbols"}


def read(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def tokens(text):
    return set(re.findall(r"\w+", (text or "").lower()))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    return out, generate(out, seed=0, scale="tiny")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("small")
    return out, generate(out, seed=0, scale="small")


def test_same_seed_gives_same_bytes_and_another_seed_other_data(tmp_path, tiny):
    out, _ = tiny
    generate(tmp_path / "again", seed=0, scale="tiny")
    generate(tmp_path / "other", seed=1, scale="tiny")
    for name in [*FILES, "truth_QC.txt", "truth_QI.txt", "synth.json"]:
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes(), name
    for name in FILES:
        assert (tmp_path / "other" / name).read_bytes() != (out / name).read_bytes(), name


def test_files_are_in_the_competition_format(tiny):
    out, _ = tiny
    for task in TASKS:
        for split in SPLITS:
            lines = (out / f"{split}_{task}.txt").read_text(encoding="utf-8").splitlines()
            rows = [json.loads(line) for line in lines]
            assert [row["id"] for row in rows] == list(range(1, len(rows) + 1))
            for row in rows:
                assert list(row) == ["id", "task", "language", "origin_query",
                                     target_column(task), "label"]
                assert row["task"] == task and row["label"] in ("0", "1")
                assert isinstance(row["origin_query"], str) and row["origin_query"].strip()
                assert isinstance(row[target_column(task)], str)
            # Native scripts are written as they are, not as \u escapes.
            assert "\\u" not in "".join(lines)


def test_languages_follow_the_real_split(tiny):
    out, summary = tiny
    for task in TASKS:
        for split in SPLITS:
            counts = Counter(row["language"] for row in read(out / f"{split}_{task}.txt"))
            expected = (TRAIN_LANGUAGES if split == "train" else EVAL_LANGUAGES)[task]
            assert set(counts) == set(expected)
            assert set(counts.values()) == {60 if split == "train" else 30}
            assert summary.counts[(split, task)] == sum(counts.values())
    assert summary.counts[("train", "QC")] == 6 * 60 and summary.counts[("dev", "QI")] == 13 * 30


def test_queries_are_in_their_own_scripts(tiny):
    out, _ = tiny
    scripts = {"ja": "[\u3040-\u30ff\u4e00-\u9fff]", "ko": "[\uac00-\ud7a3]",
               "th": "[\u0e00-\u0e7f]", "ar": "[\u0600-\u06ff]"}
    rows = read(out / "dev_QI.txt")
    for language, script in scripts.items():
        queries = [row["origin_query"] for row in rows if row["language"] == language]
        assert sum(bool(re.search(script, q)) for q in queries) >= 0.6 * len(queries), language


def test_positive_rates_are_near_the_real_ones(small):
    out, _ = small
    qc = read(out / "train_QC.txt")
    rate = {lang: np.mean([r["label"] == "1" for r in qc if r["language"] == lang])
            for lang in TRAIN_LANGUAGES["QC"]}
    assert 0.66 <= np.mean([r["label"] == "1" for r in qc]) <= 0.72
    assert 0.53 <= rate["ko"] <= 0.65 and 0.73 <= rate["ja"] <= 0.85
    qi = read(out / "train_QI.txt")
    assert 0.58 <= np.mean([r["label"] == "1" for r in qi]) <= 0.66
    for split in ("dev", "test"):  # labelled and clean: exactly the configured rates
        rows = read(out / f"{split}_QC.txt")
        ko = [r["label"] == "1" for r in rows if r["language"] == "ko"]
        assert np.mean(ko) == pytest.approx(0.59)


def test_category_paths_have_three_or_four_levels_and_names_with_comma_space(tiny):
    out, _ = tiny
    paths = {row["category_path"] for row in read(out / "train_QC.txt")}
    assert any(", " in path for path in paths)
    for path in paths:
        levels = re.split(r",(?! )", path)
        assert 3 <= len(levels) <= 4 and path == path.lower(), path
    lexicon = load_lexicon()
    tops = {re.split(r",(?! )", leaf.path)[0] for leaf in lexicon.leaves}
    assert 8 <= len(tops) <= 12
    assert "food,grocery,flour, baking and cooking,flour" in {leaf.path for leaf in lexicon.leaves}
    assert all(lexicon.negatives["sibling"]) and all(lexicon.negatives["cousin"])


def test_truth_covers_train_and_noise_matches_the_rate(tiny):
    out, summary = tiny
    for task in TASKS:
        train, truth = read(out / f"train_{task}.txt"), read(out / f"truth_{task}.txt")
        assert [t["id"] for t in truth] == [r["id"] for r in train]
        for row, fact in zip(train, truth, strict=True):
            assert set(fact) == {"id", "language", "label", "clean_label", "noisy", "kind"}
            assert fact["language"] == row["language"] and str(fact["label"]) == row["label"]
            assert fact["noisy"] == (fact["label"] != fact["clean_label"])
            assert fact["kind"] in (POSITIVE_KINDS if fact["clean_label"] else NEGATIVE_KINDS)
        for language in TRAIN_LANGUAGES[task]:
            noisy = [t["noisy"] for t in truth if t["language"] == language]
            assert sum(noisy) == round(0.08 * len(noisy))
        assert summary.noisy[task] == sum(t["noisy"] for t in truth)
    assert not (out / "truth_dev_QC.txt").exists()


def test_noise_touches_train_only(tmp_path):
    generate(tmp_path / "clean", seed=5, scale="tiny", noise=0.0)
    generate(tmp_path / "noisy", seed=5, scale="tiny", noise=0.3)
    for name in FILES:
        same = (tmp_path / "clean" / name).read_bytes() == (tmp_path / "noisy" / name).read_bytes()
        assert same == (not name.startswith("train")), name
    assert not any(t["noisy"] for t in read(tmp_path / "clean" / "truth_QI.txt"))
    truth = read(tmp_path / "noisy" / "truth_QI.txt")
    assert sum(t["noisy"] for t in truth) == 7 * round(0.3 * 60)


def test_per_language_noise_dict_is_honoured(tmp_path):
    summary = generate(tmp_path, seed=2, scale="tiny", noise={"ko": 0.25, "th": 0.5})
    for task in TASKS:
        noisy = Counter(t["language"] for t in read(tmp_path / f"truth_{task}.txt") if t["noisy"])
        expected = {"ko": 15, "th": 30} if task == "QI" else {"ko": 15}
        assert dict(noisy) == expected
        assert summary.noisy[task] == sum(expected.values())
    meta = json.loads((tmp_path / "synth.json").read_text())
    assert meta["noise"] == {"ko": 0.25, "th": 0.5} and meta["noise_per_language"]["en"] == 0.0


@pytest.mark.parametrize("noise, message", [
    ({"xx": 0.1}, "unknown language"), ({"ko": 1.5}, "between 0 and 1"), (-0.1, "between 0 and 1"),
])
def test_bad_noise_is_a_config_error(tmp_path, noise, message):
    with pytest.raises(ConfigError, match=message):
        generate(tmp_path, scale="tiny", noise=noise)


def test_unknown_scale_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="scale"):
        generate(tmp_path, scale="huge")


def test_hard_negatives_and_positives_without_shared_words(small):
    out, _ = small
    for task in TASKS:
        column = target_column(task)
        train, truth = read(out / f"train_{task}.txt"), read(out / f"truth_{task}.txt")
        kinds = Counter(t["kind"] for t in truth)
        assert kinds["sibling"] > 0.08 * len(truth) and kinds["random"] > 0
        assert 0 < kinds["symbols"] < 0.02 * len(truth)
        disjoint = Counter(t["kind"] for row, t in zip(train, truth, strict=True)
                           if t["clean_label"] and not tokens(row["origin_query"]) & tokens(row[column]))
        assert disjoint["translation"] > 0.2 * kinds["translation"]
        assert disjoint["synonym"] > 0
        assert kinds["exact"] > 0.1 * len(truth)
    assert Counter(t["kind"] for t in read(out / "truth_QI.txt"))["attribute"] > 0.1 * 2800


def test_null_titles_at_the_real_rate_and_the_loader_drops_them(small, tiny):
    out, summary = small
    rows = read(out / "train_QI.txt")
    nulls = [row for row in rows if row["item_title"] is None]
    assert len(nulls) == summary.null_titles == round(2800 * 453 / 340_000) == 4
    assert (out / "train_QI.txt").read_text(encoding="utf-8").count('"item_title": null') == 4
    assert all(row["item_title"] is not None for row in read(out / "dev_QI.txt"))
    assert tiny[1].null_titles == 0
    data = load_directory(out, tasks=["QC", "QI"])
    assert data["QI"].train.dropped == {"null item_title": 4}
    assert data["QI"].test.labelled and data["QC"].dev.labelled


def test_summary_and_metadata(tiny):
    out, summary = tiny
    assert {path.name for path in summary.files} == {*FILES, "truth_QC.txt", "truth_QI.txt",
                                                     "synth.json"}
    assert all(path.parent == out and path.exists() for path in summary.files)
    meta = json.loads((out / "synth.json").read_text())
    assert meta["seed"] == 0 and meta["scale"] == "tiny" and meta["noise"] == 0.08
    assert meta["counts"] == {"train_QC": 360, "dev_QC": 300, "test_QC": 300,
                              "train_QI": 420, "dev_QI": 390, "test_QI": 390}
    text = summary.describe()
    assert "seed 0, scale tiny" in text and "QC train 360 / dev 300 / test 300" in text
    assert "\n" not in text


def _pair_features(rows, column):
    features = []
    for row in rows:
        query, target = tokens(row["origin_query"]), tokens(row[column])
        features.append([f"{q}|{t}" for q in query for t in target] + [f"q:{q}" for q in query])
    return FeatureHasher(2**18, input_type="string").transform(features)


@pytest.mark.parametrize("task", TASKS)
def test_relevance_is_learnable_from_small_train(small, task):
    """A linear model on (query word, target word) pairs beats always-"yes" on seen languages."""
    out, _ = small
    column = target_column(task)
    train = [r for r in read(out / f"train_{task}.txt") if r[column] is not None]
    test = [r for r in read(out / f"test_{task}.txt") if r["language"] in TRAIN_LANGUAGES[task]]
    model = LogisticRegression(C=3, max_iter=2000)
    model.fit(_pair_features(train, column), [int(r["label"]) for r in train])
    truth = np.array([int(r["label"]) for r in test])
    accuracy = float(np.mean(model.predict(_pair_features(test, column)) == truth))
    assert accuracy >= truth.mean() + 0.06

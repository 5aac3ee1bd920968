import hashlib
import json
import os
import stat

import pandas as pd
import pytest

from harness.data.loader import ID_FORMAT_ATTR, load_directory, load_task, read_split, write_jsonl
from harness.errors import DataError


def qc(i, language="en", label="1", **extra):
    row = {"id": i, "task": "QC", "language": language, "origin_query": f"query {i}",
           "category_path": "home & garden,kitchen"}
    if label is not None:
        row["label"] = label
    row.update(extra)
    return row


def qi(i, language="en", label="1", **extra):
    row = {"id": i, "task": "QI", "language": language, "origin_query": f"query {i}",
           "item_title": f"title {i}"}
    if label is not None:
        row["label"] = label
    row.update(extra)
    return row


def write(path, rows):
    """Rows are dicts (dumped) or raw strings (written as they are)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def error_of(path, task="QC", split="train", strict=False):
    with pytest.raises(DataError) as info:
        read_split(path, task=task, split=split, strict=strict)
    return info.value


# ------------------------------------------------------------------------------ reading


def test_reads_contract_frame_with_string_and_int_labels(tmp_path):
    path = write(tmp_path / "train_QC.txt",
                 [qc(1, label="1"), qc(2, label=0, language="ja"), qc(3, label=1), qc(4, label="0")])
    loaded = read_split(path, task="QC", split="train")
    frame = loaded.frame
    assert list(frame.columns) == ["id", "task", "language", "origin_query", "category_path", "label"]
    assert str(frame["label"].dtype) == "Int8"
    assert frame["label"].tolist() == [1, 0, 1, 0]
    assert frame["id"].tolist() == ["1", "2", "3", "4"]
    assert frame["language"].tolist() == ["en", "ja", "en", "en"]
    assert isinstance(frame.index, pd.RangeIndex)
    assert loaded.rows == 4 and loaded.labelled and loaded.dropped == {}
    assert loaded.fingerprint == hashlib.sha256(path.read_bytes()).hexdigest()
    assert frame.attrs[ID_FORMAT_ATTR] == "int"


def test_missing_task_is_filled_and_extra_fields_are_kept(tmp_path):
    rows = [qc(1, score=3, note="a"), qc(2), qc(3, score=5)]
    del rows[0]["task"], rows[2]["task"]
    frame = read_split(write(tmp_path / "t.txt", rows), task="QC", split="train").frame
    assert frame["task"].tolist() == ["QC"] * 3
    assert list(frame.columns)[-2:] == ["score", "note"]
    assert str(frame["score"].dtype) == "Int64"  # integers with a gap stay integers
    assert frame["score"].tolist()[::2] == [3, 5] and frame["score"].isna().tolist()[1]


def test_unlabelled_and_partly_labelled_splits(tmp_path):
    dev = read_split(write(tmp_path / "dev_QI.txt", [qi(1, label=None), qi(2, label=None, language="vn")]),
                     task="QI", split="dev")
    assert dev.frame["label"].isna().all() and not dev.labelled
    partly = read_split(write(tmp_path / "p.txt", [qi(1, label="1"), qi(2, label=None)]),
                        task="QI", split="dev")
    assert partly.frame["label"].tolist() == [1, pd.NA] and not partly.labelled


def test_malformed_json_names_file_and_line(tmp_path):
    path = write(tmp_path / "train_QC.txt", [qc(1), qc(2), '{"id": 3, "language": "en",'])
    message = str(error_of(path))
    assert "train_QC.txt" in message and "line 3" in message and "malformed JSON" in message


@pytest.mark.parametrize("line, expected", [
    ("[1, 2]", "expected a JSON object, got list"),
    ('{"id": 1} {"id": 2}', "extra data"),
])
def test_non_object_lines(tmp_path, line, expected):
    message = str(error_of(write(tmp_path / "x.txt", [qc(1), line])))
    assert "line 2" in message and expected in message


def test_missing_required_field(tmp_path):
    row = qc(2)
    del row["origin_query"]
    error = error_of(write(tmp_path / "train_QC.txt", [qc(1), row]))
    assert (error.line, error.field) == (2, "origin_query")
    assert "missing required field" in str(error) and "field 'origin_query'" in str(error)


def test_qi_file_read_as_qc_gets_a_hint(tmp_path):
    error = error_of(write(tmp_path / "train_QI.txt", [{**qi(1), "task": "QC"}]))
    assert error.field == "category_path" and "looks like a QI file" in str(error)


def test_wrong_task(tmp_path):
    error = error_of(write(tmp_path / "train_QC.txt", [qc(1), qi(2)]))
    assert (error.line, error.field) == (2, "task") and "task is 'QI', expected 'QC'" in str(error)


@pytest.mark.parametrize("label", ["2", 2, 1.0, True, "yes", ""])
def test_bad_label(tmp_path, label):
    error = error_of(write(tmp_path / "train_QC.txt", [qc(1), qc(2), qc(3, label=label)]))
    assert (error.line, error.field) == (3, "label") and "is not 0 or 1" in str(error)


def test_duplicate_id_names_both_lines(tmp_path):
    error = error_of(write(tmp_path / "train_QC.txt", [qc(5), qc(6), {**qc(7), "id": "5"}]))
    assert error.line == 3 and error.field == "id"
    assert "duplicate id '5' (first on line 1)" in str(error)


@pytest.mark.parametrize("bad_id", [1.5, None, "", [1], True])
def test_id_must_be_int_or_string(tmp_path, bad_id):
    error = error_of(write(tmp_path / "train_QC.txt", [{**qc(1), "id": bad_id}]))
    assert error.field == "id" and "integer or a non-empty string" in str(error)


def test_unknown_language(tmp_path):
    error = error_of(write(tmp_path / "train_QC.txt", [qc(1), qc(2, language="vi")]))
    assert (error.line, error.field) == (2, "language")
    assert "'vi' is not one of en, es" in str(error) and "Vietnamese is 'vn'" in str(error)


def test_null_and_blank_texts_are_dropped_and_counted(tmp_path):
    rows = [qi(1), {**qi(2), "item_title": None}, {**qi(3), "item_title": "  \t"},
            {**qi(4), "origin_query": None}, {**qi(5), "item_title": None}, qi(6)]
    loaded = read_split(write(tmp_path / "train_QI.txt", rows), task="QI", split="train")
    assert loaded.frame["id"].tolist() == ["1", "6"]
    assert loaded.dropped == {"null item_title": 2, "empty item_title": 1, "null origin_query": 1}
    assert loaded.dropped_ids == ("2", "3", "4", "5")


def test_strict_mode_raises_on_a_dropped_row(tmp_path):
    path = write(tmp_path / "train_QI.txt", [qi(1), {**qi(2), "item_title": None}])
    error = error_of(path, task="QI", strict=True)
    assert (error.line, error.field) == (2, "item_title") and "null item_title" in str(error)


def test_non_string_text_is_an_error(tmp_path):
    error = error_of(write(tmp_path / "train_QC.txt", [{**qc(1), "origin_query": 42}]))
    assert error.field == "origin_query" and "expected a string, got int" in str(error)


def test_bom_blank_lines_and_crlf_are_tolerated(tmp_path):
    body = "\r\n".join([json.dumps(qc(1)), "", "   ", json.dumps(qc(2, language="ko")), ""])
    path = tmp_path / "train_QC.txt"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    frame = read_split(path, task="QC", split="train").frame
    assert frame["id"].tolist() == ["1", "2"] and frame["language"].tolist() == ["en", "ko"]
    assert frame["category_path"].tolist() == ["home & garden,kitchen"] * 2


def test_line_numbers_count_blank_lines(tmp_path):
    path = tmp_path / "train_QC.txt"
    path.write_text(json.dumps(qc(1)) + "\n\n\n" + json.dumps(qc(2, label="x")) + "\n")
    assert error_of(path).line == 4


def test_invalid_utf8(tmp_path):
    path = tmp_path / "train_QC.txt"
    path.write_bytes(json.dumps(qc(1)).encode() + b'\n{"id": "\xff"}\n')
    error = error_of(path)
    assert error.line == 2 and "not valid UTF-8" in str(error)


# ------------------------------------------------------------------------------ writing


def test_write_jsonl_round_trip(tmp_path):
    rows = [qi(1, label="1", score=3, source="a"), qi(2, label=0), {**qi(3, label=None), "task": "QI"}]
    src = write(tmp_path / "in.txt", rows)
    loaded = read_split(src, task="QI", split="train")
    out = tmp_path / "out.txt"
    write_jsonl(loaded.frame.assign(extra_text=["x", "y", "z"]), out)
    written = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert written[0] == {"id": 1, "task": "QI", "language": "en", "origin_query": "query 1",
                          "item_title": "title 1", "label": "1", "score": 3, "source": "a",
                          "extra_text": "x"}
    assert written[1]["label"] == "0" and "score" not in written[1] and "source" not in written[1]
    assert "label" not in written[2]
    again = read_split(out, task="QI", split="train").frame
    pd.testing.assert_frame_equal(again.drop(columns="extra_text"), loaded.frame)
    assert [p.name for p in tmp_path.iterdir()] and not list(tmp_path.glob(".*.tmp"))


def test_write_jsonl_keeps_string_ids_and_unicode(tmp_path):
    src = write(tmp_path / "in.txt", [{**qc(1), "id": "a-1", "origin_query": "ตู้เย็น"}])
    frame = read_split(src, task="QC", split="train").frame
    out = tmp_path / "out.txt"
    write_jsonl(frame, out)
    text = out.read_text(encoding="utf-8")
    assert json.loads(text)["id"] == "a-1" and "ตู้เย็น" in text


# ------------------------------------------------------------------------------ directories


def test_load_task_requires_train(tmp_path):
    with pytest.raises(DataError) as info:
        load_task(tmp_path, task="QC")
    assert str(info.value) == (f"{tmp_path}: no train_QC.txt (expected competition files "
                               "train_QC.txt, dev_QC.txt, test_QC.txt)")
    write(tmp_path / "dev_QC.txt", [qc(1, label=None)])
    with pytest.raises(DataError) as info:
        load_task(tmp_path, task="QC")
    assert str(info.value) == f"{tmp_path}: QC: dev_QC.txt present but train_QC.txt is missing"
    write(tmp_path / "test_QC.txt", [qc(1, label=None)])
    with pytest.raises(DataError) as info:
        load_task(tmp_path, task="QC")
    assert str(info.value) == (f"{tmp_path}: QC: dev_QC.txt/test_QC.txt present but train_QC.txt "
                               "is missing")


@pytest.mark.parametrize("label", ["0", "1"])
def test_one_class_train_is_an_error(tmp_path, label):
    # the unlabelled row and the dropped row of the other class do not count as a second class
    other = "1" if label == "0" else "0"
    write(tmp_path / "train_QC.txt", [qc(1, label=label), qc(2, label=int(label)), qc(3, label=None),
                                      {**qc(4, label=other), "origin_query": ""}])
    with pytest.raises(DataError) as info:
        load_task(tmp_path, task="QC")
    assert str(info.value) == (f"{tmp_path / 'train_QC.txt'}: every labelled row has label {label} "
                               "(2 rows): a classifier cannot be trained on one class")


def test_unlabelled_train_is_an_error(tmp_path):
    write(tmp_path / "train_QC.txt", [qc(1, label=None), qc(2, label=None)])
    with pytest.raises(DataError, match=r"train_QC.txt: no labelled rows \(2 rows, none with a label\)"):
        load_task(tmp_path, task="QC")
    write(tmp_path / "train_QC.txt", [qc(1, label=None), qc(2, label="0"), qc(3, label="1")])
    assert load_task(tmp_path, task="QC").train.rows == 3  # partly labelled, both classes: fine


def test_load_task_optional_splits_and_fingerprint(tmp_path):
    write(tmp_path / "train_QC.txt", [qc(1), qc(2, label="0")])
    write(tmp_path / "dev_QC.txt", [qc(1, label=None, language="de")])
    data = load_task(tmp_path, task="QC")
    assert data.test is None and data.dev.rows == 1
    assert [s.split for s in data.splits()] == ["train", "dev"]
    before = data.fingerprint
    assert load_task(tmp_path, task="QC").fingerprint == before
    write(tmp_path / "dev_QC.txt", [qc(1, label=None, language="it")])
    assert load_task(tmp_path, task="QC").fingerprint != before
    assert load_task(tmp_path, task="QC", splits=("train",)).dev is None


def test_empty_train_is_an_error(tmp_path):
    (tmp_path / "train_QC.txt").write_text("\n\n")
    with pytest.raises(DataError, match="no usable rows"):
        load_task(tmp_path, task="QC")
    write(tmp_path / "train_QC.txt", [{**qc(1), "category_path": None}])
    with pytest.raises(DataError, match=r"1 dropped: null category_path: 1"):
        load_task(tmp_path, task="QC")


def test_load_directory_validates_every_file(tmp_path):
    write(tmp_path / "train_QC.txt", [qc(1), qc(2, label="0")])
    write(tmp_path / "train_QI.txt", [qi(1), qi(2, label="0")])
    write(tmp_path / "test_QI.txt", [qi(1, label=None), qi(2, label=None, language="xx")])
    with pytest.raises(DataError, match=r"test_QI.txt, line 2"):
        load_directory(tmp_path, tasks=("QC", "QI"))
    assert set(load_directory(tmp_path, tasks=("QC",))) == {"QC"}


def test_written_files_get_the_usual_permissions_not_mkstemps_0600(tmp_path):
    # `data qr` / `data tag` outputs and submissions are read by other users and tools.
    old = os.umask(0o022)
    try:
        write_jsonl(pd.DataFrame({"id": ["1"], "language": ["en"], "label": [1]}), tmp_path / "out.txt")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.txt").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary file left behind

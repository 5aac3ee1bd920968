import json

import pytest

from harness.data.check import check_directory
from harness.errors import DataError


def row(task, i, language, label):
    target = "category_path" if task == "QC" else "item_title"
    record = {"id": i, "task": task, "language": language, "origin_query": f"q{i}",
              target: f"text {i}"}
    if label is not None:
        record["label"] = str(label)
    return record


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture
def data_dir(tmp_path):
    # QC train: en 4 rows (3 positive), ja 2 rows (0 positive); dev adds de; no test file.
    write(tmp_path / "train_QC.txt",
          [row("QC", i, "en", int(i < 3)) for i in range(4)]
          + [row("QC", i, "ja", 0) for i in range(4, 6)])
    write(tmp_path / "dev_QC.txt", [row("QC", i, lang, None)
                                    for i, lang in enumerate(["en", "ja", "de", "de"], 1)])
    qi_train = [row("QI", i, "th", int(i > 0)) for i in range(3)]
    qi_train.append({**row("QI", 3, "th", 0), "item_title": None})
    write(tmp_path / "train_QI.txt", qi_train)
    write(tmp_path / "dev_QI.txt", [row("QI", 1, "th", None), row("QI", 2, "vn", None)])
    write(tmp_path / "test_QI.txt", [row("QI", 1, "id", 1), row("QI", 2, "th", 0)])
    return tmp_path


def test_report_numbers(data_dir):
    report = check_directory(data_dir)
    qc = report.tasks["QC"]
    assert qc.splits["train"].languages == {"en": 4, "ja": 2}
    assert qc.splits["train"].positive_rate == pytest.approx(0.5)
    assert qc.splits["train"].positive_by_language == {"en": 0.75, "ja": 0.0}
    assert qc.splits["dev"].positive_rate is None and qc.splits["test"] is None
    assert qc.unseen == {"dev": ["de"]}
    assert report.tasks["QI"].unseen == {"dev": ["vn"], "test": ["id"]}
    assert report.tasks["QI"].splits["train"].dropped == {"null item_title": 1}


def test_render(data_dir):
    text = check_directory(data_dir).render()
    lines = text.splitlines()
    assert lines[0] == f"Data directory {data_dir}"
    assert "  train: train_QC.txt, 6 rows, 2 languages, 50.0% positive, sha256 " in text
    assert "    en          4 rows   75.0% positive" in lines
    assert "    ja          2 rows    0.0% positive" in lines
    assert "  dev: dev_QC.txt, 4 rows, 3 languages, unlabelled, sha256 " in text
    assert "    de          2 rows  (unseen in train)" in lines
    assert "  test: missing (no test_QC.txt)" in lines
    assert "  unseen languages (in dev/test, not in train): dev: de" in lines
    assert "  unseen languages (in dev/test, not in train): dev: vn; test: id" in lines
    assert "    dropped: null item_title: 1" in lines
    assert "    id          1 rows  100.0% positive  (unseen in train)" in lines
    assert lines[-1] == "OK: 2 task(s) (QC, QI), 5 files, 17 rows loaded, 1 dropped"


def test_errors_propagate(data_dir):
    (data_dir / "train_QI.txt").unlink()
    with pytest.raises(DataError, match="QI: dev_QI.txt/test_QI.txt present but train_QI.txt is missing"):
        check_directory(data_dir)
    last = check_directory(data_dir, tasks=("QC",)).render().splitlines()[-1]
    assert last == "OK: 1 task(s) (QC), 2 files, 10 rows loaded, 0 dropped"


def test_strict_check(data_dir):
    with pytest.raises(DataError, match=r"train_QI.txt, line 4, field 'item_title'"):
        check_directory(data_dir, strict=True)


@pytest.mark.parametrize("label", [0, 1])
def test_one_class_train_is_refused(data_dir, label):
    write(data_dir / "train_QC.txt", [row("QC", i, "en", label) for i in range(5)]
          + [row("QC", 5, "ja", None)])
    with pytest.raises(DataError) as info:
        check_directory(data_dir)
    assert str(info.value) == (f"{data_dir / 'train_QC.txt'}: every labelled row has label {label} "
                               "(5 rows): a classifier cannot be trained on one class")


def test_unlabelled_train_is_refused(data_dir):
    write(data_dir / "train_QI.txt", [row("QI", i, "th", None) for i in range(3)])
    with pytest.raises(DataError, match=r"train_QI.txt: no labelled rows \(3 rows"):
        check_directory(data_dir, tasks=("QI",))


def test_dev_without_train_is_refused(data_dir):
    (data_dir / "train_QI.txt").unlink()
    (data_dir / "test_QI.txt").unlink()
    with pytest.raises(DataError) as info:
        check_directory(data_dir, tasks=("QI",))
    assert str(info.value) == f"{data_dir}: QI: dev_QI.txt present but train_QI.txt is missing"

"""Reading and writing the competition's JSON Lines files (docs/architecture.md, "Data format").

`read_split` turns one file into the frame of the data contract: id as str,
task, language, origin_query, category_path (QC) or item_title (QI), label as nullable "Int8",
then any extra fields. Every problem is a `DataError` naming file, line and field; rows with a
null or blank query or target are dropped and counted per reason, never silently.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.cache import atomic_write
from harness.data import LANGUAGES, SPLITS, TASKS, split_file_name, target_column
from harness.errors import DataError

# frame.attrs key recording how ids were written in the file ("int", "str" or "mixed"), so that
# `write_jsonl` writes integer ids back as JSON integers.
ID_FORMAT_ATTR = "id_format"
LABELS = {0: 0, 1: 1, "0": 0, "1": 1}
LANGUAGE_SET = frozenset(LANGUAGES)


@dataclass(frozen=True)
class LoadedSplit:
    """One validated file: the frame plus what was dropped and the file's sha256."""

    frame: pd.DataFrame
    path: Path
    split: str
    task: str
    dropped: dict[str, int] = field(default_factory=dict)
    dropped_ids: tuple[str, ...] = ()
    fingerprint: str = ""

    @property
    def rows(self) -> int:
        return len(self.frame)

    @property
    def labelled(self) -> bool:
        """True when the split has rows and every row carries a label."""
        return self.rows > 0 and bool(self.frame["label"].notna().all())


@dataclass(frozen=True)
class TaskData:
    """The splits of one task; train is always present, dev and test may be None."""

    task: str
    train: LoadedSplit
    dev: LoadedSplit | None = None
    test: LoadedSplit | None = None

    def splits(self) -> Iterator[LoadedSplit]:
        """The splits that are present, in the order train, dev, test."""
        return (s for s in (self.train, self.dev, self.test) if s is not None)

    @property
    def fingerprint(self) -> str:
        """sha256 over the task and the fingerprints of its files (absent splits count too)."""
        parts = [f"task={self.task}"]
        for name in SPLITS:
            loaded = getattr(self, name)
            parts.append(f"{name}={loaded.fingerprint if loaded is not None else '-'}")
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def read_split(path: str | Path, *, task: str, split: str, strict: bool = False) -> LoadedSplit:
    """Read and validate one competition file (`train_QC.txt`, ...).

    Raises DataError for malformed JSON, a line that is not an object, a missing field, a wrong
    task, an unknown language, a label other than 0/1/"0"/"1", an id that is neither int nor
    string, or a duplicate id. Rows whose query or target is null or blank are dropped and
    counted (`LoadedSplit.dropped`), or are a DataError when `strict`.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read file: {exc.strerror or exc}", path=path) from exc
    fingerprint = hashlib.sha256(data).hexdigest()
    parsed = _Parser(path, task, strict).parse(_decode(data, path))
    frame = parsed.frame()
    return LoadedSplit(frame=frame, path=path, split=split, task=task, dropped=parsed.dropped,
                       dropped_ids=tuple(parsed.dropped_ids), fingerprint=fingerprint)


def load_task(directory: str | Path, *, task: str, strict: bool = False,
              splits: Sequence[str] = SPLITS) -> TaskData:
    """Load train (required, non-empty) and whichever of dev/test in `splits` exist."""
    directory = Path(directory)
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise ValueError(f"unknown split(s) {unknown}; expected some of {', '.join(SPLITS)}")
    if not directory.is_dir():
        raise DataError("no such data directory", path=directory)
    train_path = directory / split_file_name("train", task)
    if not train_path.is_file():
        expected = ", ".join(split_file_name(s, task) for s in SPLITS)
        raise orphaned_splits_error(directory, task) or DataError(
            f"{directory}: no {train_path.name} (expected competition files {expected})")
    train = read_split(train_path, task=task, split="train", strict=strict)
    if train.rows == 0:
        why = f" ({sum(train.dropped.values())} dropped: {format_dropped(train.dropped)})" if train.dropped else ""
        raise DataError(f"training file has no usable rows{why}", path=train_path)
    check_trainable(train)
    optional: dict[str, LoadedSplit | None] = {}
    for name in ("dev", "test"):
        path = directory / split_file_name(name, task)
        wanted = name in splits and path.is_file()
        optional[name] = read_split(path, task=task, split=name, strict=strict) if wanted else None
    return TaskData(task=task, train=train, dev=optional["dev"], test=optional["test"])


def load_directory(directory: str | Path, *, tasks: Sequence[str],
                   strict: bool = False) -> dict[str, TaskData]:
    """Load and validate every file of every task before returning (fail before any trial)."""
    return {task: load_task(directory, task=task, strict=strict) for task in tasks}


def check_trainable(train: LoadedSplit) -> None:
    """DataError unless the training split has labelled rows of both classes."""
    labels = train.frame["label"].dropna()
    if labels.empty:
        raise DataError(f"no labelled rows ({train.rows} rows, none with a label): a classifier "
                        "cannot be trained without labels", path=train.path)
    classes = sorted(int(value) for value in labels.unique())
    if len(classes) == 1:
        raise DataError(f"every labelled row has label {classes[0]} ({len(labels)} rows): a "
                        "classifier cannot be trained on one class", path=train.path)


def orphaned_splits_error(directory: str | Path, task: str) -> DataError | None:
    """The error for a task whose dev/test files are in `directory` but whose train file is not
    (None when the train file is there, or when neither dev nor test is)."""
    directory = Path(directory)
    train = split_file_name("train", task)
    if (directory / train).is_file():
        return None
    present = [split_file_name(s, task) for s in ("dev", "test")
               if (directory / split_file_name(s, task)).is_file()]
    if not present:
        return None
    return DataError(f"{task}: {'/'.join(present)} present but {train} is missing", path=directory)


def format_dropped(dropped: dict[str, int]) -> str:
    """`null item_title: 453, empty origin_query: 2`."""
    return ", ".join(f"{reason}: {count:,}" for reason, count in dropped.items())


def write_jsonl(frame: pd.DataFrame, path: str | Path) -> None:
    """Write `frame` in competition format, atomically and with the usual permissions.

    Columns are written in frame order; ids are written as JSON integers when the file they
    were read from had integer ids; labels are written as "0"/"1" and omitted where missing;
    other missing values are omitted, except required fields, which are written as null.
    """
    int_ids = frame.attrs.get(ID_FORMAT_ATTR) == "int"
    required = {"id", "task", "language", "origin_query", "category_path", "item_title"}
    columns = [str(c) for c in frame.columns]
    values = [frame[c].tolist() for c in frame.columns]

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="\n") as out:
            for row in zip(*values, strict=True):
                record: dict[str, Any] = {}
                for name, value in zip(columns, row, strict=True):
                    if _missing(value):
                        if name in required:
                            record[name] = None
                    elif name == "label":
                        record[name] = str(int(value))
                    elif name == "id" and int_ids and _is_int_text(value):
                        record[name] = int(value)
                    else:
                        record[name] = value
                out.write(json.dumps(record, ensure_ascii=False, default=_json_default) + "\n")

    atomic_write(Path(path), write)


# ------------------------------------------------------------------------------- internals


class _Parser:
    """Validates lines one by one and collects the columns of the kept rows."""

    def __init__(self, path: Path, task: str, strict: bool) -> None:
        self.path, self.task, self.strict = path, task, strict
        self.target = target_column(task)
        self.standard = frozenset(("id", "task", "language", "origin_query", self.target, "label"))
        self.required = ("id", "language", "origin_query", self.target)
        self.columns: dict[str, list[Any]] = {
            name: [] for name in ("id", "language", "origin_query", self.target, "label")}
        # (position among the kept rows, fields outside the standard ones)
        self.extra_rows: list[tuple[int, dict[str, Any]]] = []
        self.extra_names: dict[str, None] = {}
        self.dropped: dict[str, int] = {}
        self.dropped_ids: list[str] = []
        self.seen: dict[str, int] = {}
        self.id_types: set[type] = set()

    def error(self, message: str, line: int, name: str | None = None) -> DataError:
        return DataError(message, path=self.path, line=line, field=name)

    def parse(self, text: str) -> _Parser:
        decode, standard = json.JSONDecoder().raw_decode, self.standard
        for number, raw in enumerate(text.split("\n"), start=1):
            line = raw.strip(" \t\r")
            if not line:
                continue
            try:
                record, end = decode(line)
            except json.JSONDecodeError as exc:
                column = exc.colno + len(raw) - len(raw.lstrip(" \t\r"))
                raise self.error(f"malformed JSON ({exc.msg} at column {column})", number) from None
            if end != len(line):
                raise self.error(f"malformed JSON (extra data after the object, column {end + 1})", number)
            if type(record) is not dict:
                raise self.error(f"expected a JSON object, got {type(record).__name__}", number)
            self.row(record, number, has_extra=not record.keys() <= standard)
        return self

    def row(self, record: dict[str, Any], number: int, *, has_extra: bool) -> None:
        if "task" in record and record["task"] != self.task:
            raise self.error(f"task is {record['task']!r}, expected {self.task!r}", number, "task")
        for name in self.required:
            if name not in record:
                hint = ""
                if name == self.target and target_column(_other(self.task)) in record:
                    hint = f" (this looks like a {_other(self.task)} file)"
                raise self.error(f"missing required field{hint}", number, name)
        row_id = self.row_id(record["id"], number)
        language = record["language"]
        if type(language) is not str or language not in LANGUAGE_SET:
            hint = " (Vietnamese is 'vn')" if language in ("vi", "VN", "vn-VN") else ""
            raise self.error(f"language {language!r} is not one of {', '.join(LANGUAGES)}{hint}",
                             number, "language")
        label = record.get("label")
        if label is not None:
            label = LABELS.get(label) if type(label) in (int, str) else None
            if label is None:
                raise self.error(f"label {record['label']!r} is not 0 or 1", number, "label")
        query, target = record["origin_query"], record[self.target]
        usable = type(query) is str and type(target) is str and query.strip() and target.strip()
        if not usable:
            reason = (self.drop_reason(query, "origin_query", number)
                      or self.drop_reason(target, self.target, number))
            if self.strict:
                raise self.error(f"{reason} (strict mode)", number, reason.split()[-1])
            self.dropped[reason] = self.dropped.get(reason, 0) + 1
            self.dropped_ids.append(row_id)
            return
        columns = self.columns
        columns["id"].append(row_id)
        columns["language"].append(language)
        columns["origin_query"].append(query)
        columns[self.target].append(target)
        columns["label"].append(label)
        if has_extra:
            extra = {k: v for k, v in record.items() if k not in self.standard}
            self.extra_names.update(dict.fromkeys(extra))
            self.extra_rows.append((len(columns["id"]) - 1, extra))

    def row_id(self, value: Any, number: int) -> str:
        if type(value) is int:
            text = str(value)
        elif type(value) is str and value.strip():
            text = value
        else:
            raise self.error(f"id must be an integer or a non-empty string, got {value!r}", number, "id")
        self.id_types.add(type(value))
        first = self.seen.setdefault(text, number)
        if first != number:
            raise self.error(f"duplicate id {text!r} (first on line {first})", number, "id")
        return text

    def drop_reason(self, value: Any, name: str, number: int) -> str | None:
        if value is None:
            return f"null {name}"
        if type(value) is not str:
            raise self.error(f"expected a string, got {type(value).__name__}", number, name)
        return None if value.strip() else f"empty {name}"

    def frame(self) -> pd.DataFrame:
        cols = self.columns
        n = len(cols["id"])
        data: dict[str, Any] = {
            "id": pd.Series(cols["id"], dtype="str"),
            "task": pd.Series([self.task] * n, dtype="str"),
            "language": pd.Series(cols["language"], dtype="str"),
            "origin_query": pd.Series(cols["origin_query"], dtype="str"),
            self.target: pd.Series(cols[self.target], dtype="str"),
            "label": pd.Series(pd.array(cols["label"], dtype="Int8")),
        }
        if self.extra_names:
            extras = pd.DataFrame([extra for _, extra in self.extra_rows],
                                  index=[position for position, _ in self.extra_rows],
                                  columns=list(self.extra_names), dtype=object).reindex(range(n))
            for name in self.extra_names:
                data[name] = _infer_column(extras[name])
        frame = pd.DataFrame(data)
        kinds = {int: "int", str: "str"}
        frame.attrs[ID_FORMAT_ATTR] = kinds[next(iter(self.id_types))] if len(self.id_types) == 1 else "mixed"
        return frame


def _other(task: str) -> str:
    return TASKS[1 - TASKS.index(task)]


def _decode(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(f"not valid UTF-8 (byte {exc.start})", path=path, line=line) from None


def _infer_column(column: pd.Series) -> pd.Series:
    """An extra field as the narrowest fitting dtype; integers stay integers despite gaps."""
    kind = pd.api.types.infer_dtype(column, skipna=True)
    has_na = bool(column.isna().any())
    dtype = {
        "integer": "Int64" if has_na else "int64",
        "floating": "float64",
        "mixed-integer-float": "float64",
        "boolean": "boolean" if has_na else "bool",
        "string": "str",
    }.get(kind)
    if dtype is None:
        return column.reset_index(drop=True)
    try:
        return column.astype(dtype).reset_index(drop=True)
    except (OverflowError, TypeError, ValueError):
        return column.reset_index(drop=True)


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (
        isinstance(value, float) and math.isnan(value))


def _is_int_text(value: Any) -> bool:
    return isinstance(value, str) and value.lstrip("-").isdigit() and str(int(value)) == value


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):  # numpy arrays
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")

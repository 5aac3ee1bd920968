"""`python -m harness data check DIR`: validate a data directory and summarise what is in it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.data import LANGUAGES, SPLITS, split_file_name
from harness.data.loader import LoadedSplit, format_dropped, load_directory


@dataclass(frozen=True)
class SplitSummary:
    """Counts for one file: rows and positive rate, overall and per language."""

    split: str
    file: str
    rows: int
    fingerprint: str
    languages: dict[str, int]
    labelled_rows: int
    positive_rate: float | None
    positive_by_language: dict[str, float] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, loaded: LoadedSplit) -> SplitSummary:
        frame = loaded.frame
        labelled = frame[frame["label"].notna()]
        by_language = labelled.groupby("language")["label"].mean()
        counts = frame["language"].value_counts()
        return cls(
            split=loaded.split, file=loaded.path.name, rows=loaded.rows,
            fingerprint=loaded.fingerprint,
            languages={lang: int(counts[lang]) for lang in LANGUAGES if lang in counts.index},
            labelled_rows=len(labelled),
            positive_rate=float(labelled["label"].mean()) if len(labelled) else None,
            positive_by_language={lang: float(by_language[lang]) for lang in LANGUAGES
                                  if lang in by_language.index},
            dropped=dict(loaded.dropped),
        )

    @property
    def balance(self) -> str:
        """`69.0% positive`, `unlabelled`, or `12 of 40 rows labelled, 50.0% positive`."""
        if self.positive_rate is None:
            return "unlabelled"
        rate = f"{self.positive_rate:.1%} positive"
        if self.labelled_rows == self.rows:
            return rate
        return f"{self.labelled_rows:,} of {self.rows:,} rows labelled, {rate}"


@dataclass(frozen=True)
class TaskSummary:
    task: str
    splits: dict[str, SplitSummary | None]

    @property
    def unseen(self) -> dict[str, list[str]]:
        """Per dev/test split, the languages it has that train has not."""
        train = self.splits["train"]
        seen = set(train.languages) if train else set()
        return {name: [lang for lang in s.languages if lang not in seen]
                for name, s in self.splits.items() if s is not None and name != "train"}


@dataclass(frozen=True)
class DataReport:
    directory: Path
    tasks: dict[str, TaskSummary]

    @property
    def files(self) -> list[SplitSummary]:
        return [s for t in self.tasks.values() for s in t.splits.values() if s is not None]

    def render(self) -> str:
        """The text `python -m harness data check DIR` prints."""
        lines = [f"Data directory {self.directory}"]
        for summary in self.tasks.values():
            lines += ["", f"{summary.task}"]
            unseen = summary.unseen
            for name in SPLITS:
                split = summary.splits[name]
                if split is None:
                    lines.append(f"  {name}: missing (no {split_file_name(name, summary.task)})")
                    continue
                lines.append(f"  {name}: {split.file}, {split.rows:,} rows, "
                             f"{len(split.languages)} languages, {split.balance}, "
                             f"sha256 {split.fingerprint[:12]}")
                for lang, rows in split.languages.items():
                    rate = split.positive_by_language.get(lang)
                    text = f"    {lang:<3}{rows:>10,} rows"
                    if rate is not None:
                        text += f"  {rate:6.1%} positive"
                    if lang in unseen.get(name, ()):
                        text += "  (unseen in train)"
                    lines.append(text)
                if split.dropped:
                    lines.append(f"    dropped: {format_dropped(split.dropped)}")
            described = [f"{name}: {', '.join(langs)}" for name, langs in unseen.items() if langs]
            lines.append("  unseen languages (in dev/test, not in train): "
                         + ("; ".join(described) if described else "none"))
        files = self.files
        dropped = sum(sum(s.dropped.values()) for s in files)
        lines += ["", f"OK: {len(self.tasks)} task(s) ({', '.join(self.tasks)}), {len(files)} files, "
                      f"{sum(s.rows for s in files):,} rows loaded, {dropped:,} dropped"]
        return "\n".join(lines)


def check_directory(directory: str | Path, *, tasks: Sequence[str] = ("QC", "QI"),
                    strict: bool = False) -> DataReport:
    """Load and validate every file of `tasks` in `directory` (DataError on the first problem)."""
    directory = Path(directory)
    loaded = load_directory(directory, tasks=tasks, strict=strict)
    return DataReport(directory=directory, tasks={
        task: TaskSummary(task=task, splits={
            "train": SplitSummary.of(data.train),
            "dev": SplitSummary.of(data.dev) if data.dev else None,
            "test": SplitSummary.of(data.test) if data.test else None,
        }) for task, data in loaded.items()})

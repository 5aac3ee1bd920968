"""The sweep's data: the built-in benchmark or a directory of competition files, validated
before the first trial, with fingerprints for trial keys and a corpus for the tiny tokenizer."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.cache import stable_hash
from harness.config import SweepConfig
from harness.data import TASKS, split_file_name, target_column
from harness.data.loader import TaskData, format_dropped, load_directory, orphaned_splits_error
from harness.errors import DataError

# Bump when the generator's output for a given seed/scale changes.
SYNTH_FORMAT = "3"
_CORPUS_ROWS = 20_000
_SEED_TEXT_WEIGHT = 200


@dataclass
class PreparedData:
    directory: Path
    source: str
    fingerprints: dict[str, str]
    tasks: dict[str, TaskData] = field(default_factory=dict)
    truth: dict[str, pd.DataFrame] = field(default_factory=dict)

    def other_train(self, task: str) -> pd.DataFrame | None:
        """The training rows of `task` when the data directory has them (whatever the sweep's
        tasks are)."""
        return self.tasks[task].train.frame if task in self.tasks else None

    def corpus(self) -> Iterator[str]:
        """Text the built-in tokenizer is trained on: queries and targets of every split of every
        task in the data directory (capped per split), plus the prompt templates and component
        markers. Not only the sweep's tasks: a trial's tokenizer never depends on them."""
        # Weighted so the template words become whole tokens: shorter prompts, faster trials.
        for _ in range(_SEED_TEXT_WEIGHT):
            yield from tokenizer_seed_texts()
        for task, task_data in self.tasks.items():
            for split in task_data.splits():
                frame = split.frame.head(_CORPUS_ROWS)
                yield from frame["origin_query"].astype(str)
                yield from frame[target_column(task)].astype(str)

    def dropped_counts(self) -> dict[str, float]:
        """Rows dropped while loading, as `dropped/<task>/<split>` counts (0 included)."""
        return {f"dropped/{task}/{split.split}": float(sum(split.dropped.values()))
                for task, task_data in self.tasks.items() for split in task_data.splits()}

    def describe(self) -> str:
        lines = [f"Data: {self.source} ({self.directory})"]
        for task, task_data in self.tasks.items():
            parts = []
            for split in task_data.splits():
                dropped = f", dropped {format_dropped(split.dropped)}" if split.dropped else ""
                labelled = "labelled" if split.labelled else "unlabelled"
                parts.append(f"{split.split} {split.rows} rows ({labelled}{dropped})")
            lines.append(f"  {task}: " + "; ".join(parts))
        return "\n".join(lines)


def tokenizer_seed_texts() -> list[str]:
    """Prompt templates and every component's markers, so the tokenizer knows them all."""
    from harness.components import REGISTRY
    from harness.components.prompts import tokenizer_texts

    texts = [text for component in REGISTRY for text in component.markers()]
    return [*texts, *tokenizer_texts()]


def synth_directory(config: SweepConfig) -> Path:
    return config.cache_dir / "data" / f"synth-{stable_hash(_synth_identity(config))[:12]}"


def _synth_identity(config: SweepConfig) -> dict:
    return {"synth": config.data.synth.model_dump(mode="json"), "format": SYNTH_FORMAT}


def ensure_synth(config: SweepConfig, *, progress: bool = True) -> Path:
    """Generate the built-in benchmark once into the cache (atomically: temp dir, then rename)."""
    from harness.data.synth import generate

    target = synth_directory(config)
    if (target / "synth.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".synth-"))
    try:
        settings = config.data.synth
        generate(tmp, seed=settings.seed, scale=settings.scale, noise=settings.noise)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _file_fingerprint(directory: Path, task: str) -> str:
    digest = hashlib.sha256()
    for split in ("train", "dev", "test"):
        path = directory / split_file_name(split, task)
        if path.exists():
            digest.update(split.encode())
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def _read_truth(directory: Path, task: str) -> pd.DataFrame | None:
    path = directory / f"truth_{task}.txt"
    if not path.exists():
        return None
    truth = pd.read_json(path, lines=True, dtype={"id": str})
    truth["id"] = truth["id"].astype(str)
    return truth


def prepare_data(config: SweepConfig, *, load: bool = True) -> PreparedData:
    """Locate (and for the built-in benchmark, generate) the data; load and validate it all.

    Every task whose training file is in the directory is loaded, not only the sweep's tasks:
    other tasks' rows feed components (SIT's QC leaf) and the built-in tokenizer. With
    `load=False` (dry runs) nothing is generated or parsed: fingerprints come from the
    benchmark's settings or from the bytes of the files.
    """
    if config.data.source == "synth":
        directory = synth_directory(config)
        present = list(TASKS)  # the generator writes both tasks
        fingerprints = {task: stable_hash({**_synth_identity(config), "task": task})
                        for task in present}
        if not load:
            return PreparedData(directory, "built-in benchmark", fingerprints)
        directory = ensure_synth(config)
        source = "built-in benchmark"
    else:
        directory = Path(config.data.dir)
        if not directory.is_dir():
            raise DataError(f"{directory}: data directory not found")
        for task in config.tasks:
            if (orphaned := orphaned_splits_error(directory, task)) is not None:
                raise orphaned
        missing = [split_file_name("train", t) for t in config.tasks
                   if not (directory / split_file_name("train", t)).exists()]
        if missing:
            raise DataError(f"{directory}: no {', '.join(missing)} (expected the competition "
                            "files train_QC.txt, dev_QC.txt, test_QC.txt, train_QI.txt, ...)")
        present = [t for t in TASKS if t in config.tasks
                   or (directory / split_file_name("train", t)).exists()]
        fingerprints = {task: _file_fingerprint(directory, task) for task in present}
        if not load:
            return PreparedData(directory, "directory", fingerprints)
        source = "directory"
    tasks = load_directory(directory, tasks=tuple(present), strict=config.data.strict)
    truth = {task: frame for task in present
             if (frame := _read_truth(directory, task)) is not None}
    return PreparedData(directory, source, fingerprints, tasks, truth)

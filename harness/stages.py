"""Cached stages between loaded data and prompts, driven by the component registry.

A trial's rows go through its components in pipeline order: rows-stage components (QR) keep or
drop training rows; query- and target-stage components (TR, LT, HCT, SIT, DG) rewrite or extend
`query_text` / `target_text`, each reading what the previous one wrote; prompt-stage components
(ICL, CoT) shape the prompt. Every output is cached by (component, version, the settings that
change it, fingerprints of what it reads), so a shared stage runs once per input across trials.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.cache import StageCache, frame_fingerprint, stable_hash
from harness.components import REGISTRY, Component, Context, PromptParts, RowsResult, prompts
from harness.components.base import TEXT_COLUMN
from harness.config import SweepConfig
from harness.data import target_column
from harness.data.loader import TaskData
from harness.data.split import holdout_split, leave_language_out, stratified_subsample
from harness.errors import DataError
from harness.plan import TrialSpec

HOLDOUT_VERSION = "1"
# A search trains and scores on a split of the training rows, never on the evaluation rows.
SEARCH_SEED_OFFSET = 1_000_003


@dataclass(frozen=True)
class EvalSets:
    """The rows a trial trains on, the labelled rows it is scored on, and unlabelled rows to predict."""

    task: str
    train: pd.DataFrame
    evaluation: pd.DataFrame
    eval_name: str
    unlabelled: dict[str, pd.DataFrame]
    truth: pd.DataFrame | None = None

    @property
    def seen_languages(self) -> list[str]:
        return sorted(self.train["language"].unique())


class Stages:
    """Runs and caches the component stages for one sweep.

    `seconds` adds up the wall time spent in each stage (cache reads included), by name:
    "holdout", a component's name, "prompts"."""

    def __init__(self, *, config: SweepConfig, cache: StageCache, data: Any = None) -> None:
        self.config = config
        self.cache = cache
        self.data = data
        self.seconds: defaultdict[str, float] = defaultdict(float)

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - started

    def evaluation_sets(self, task_data: TaskData, *, heldout_language: str | None = None,
                        truth: pd.DataFrame | None = None, search: bool = False) -> EvalSets:
        """Choose the evaluation rows: a labelled test or dev split, else a holdout of train
        grouped by query (cached); optionally hold one language out of training. A search
        (`search=True`) instead scores on a second grouped holdout carved from the training
        rows, so the configuration it picks is never chosen on the rows the report scores."""
        config = self.config
        evaluation_config = config.data.eval
        train = task_data.train.frame
        unlabelled = {name: split.frame for name, split in (("dev", task_data.dev), ("test", task_data.test))
                      if split is not None and not split.labelled}
        choice = evaluation_config.split
        if choice == "auto":
            choice = next((name for name, split in (("test", task_data.test), ("dev", task_data.dev))
                           if split is not None and split.labelled), "holdout")
        if choice == "holdout":
            train, evaluation = self._holdout(train, seed=evaluation_config.holdout_seed)
        else:
            split = task_data.test if choice == "test" else task_data.dev
            if split is None or not split.labelled:
                raise DataError(f"data.eval.split is '{choice}' but {choice}_{task_data.task}.txt "
                                "is missing or not fully labelled")
            evaluation = split.frame
        if config.data.max_train_rows is not None:
            train = stratified_subsample(train, n=config.data.max_train_rows, seed=0)
        name = choice
        if search:
            train, evaluation = self._holdout(
                train, seed=evaluation_config.holdout_seed + SEARCH_SEED_OFFSET)
            name, unlabelled = "search", {}
        if heldout_language is not None:
            train, _ = leave_language_out(train, language=heldout_language)
            evaluation = evaluation[evaluation["language"] == heldout_language].reset_index(drop=True)
            if evaluation.empty:
                raise DataError(f"no {task_data.task} evaluation rows in language '{heldout_language}'")
            name = f"{name}-{heldout_language}"
        return EvalSets(task_data.task, train.reset_index(drop=True),
                        evaluation.reset_index(drop=True), name, unlabelled, truth)

    def _holdout(self, train: pd.DataFrame, *, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        settings = self.config.data.eval
        inputs = [frame_fingerprint(train, ["id", "language", "origin_query", "label"])]

        def compute() -> np.ndarray:
            _, evaluation = holdout_split(train, fraction=settings.holdout_fraction, seed=seed)
            return train["id"].isin(set(evaluation["id"])).to_numpy()

        with self.timed("holdout"):
            is_eval = self.cache.get_or_compute(
                "holdout", version=HOLDOUT_VERSION, params={"fraction": settings.holdout_fraction,
                                                        "seed": seed},
            inputs=inputs, compute=compute, kind="array")
        return (train[~is_eval].reset_index(drop=True), train[is_eval].reset_index(drop=True))

    # ---------------------------------------------------------------- text stages

    def context(self, spec: TrialSpec, **kwargs: Any) -> Context:
        return spec.context(cache=self.cache, data=self.data, **kwargs)

    def text_columns(self, frame: pd.DataFrame, spec: TrialSpec, *,
                     components: tuple[str, ...] | None = None) -> pd.DataFrame:
        """`frame` plus `query_text` and `target_text` as the trial's text components shape
        them, each reading what the previous one wrote (`components` overrides the trial's)."""
        names = spec.components if components is None else components
        context = self.context(spec)
        out = frame.copy()
        out["query_text"] = frame["origin_query"].astype(str).to_numpy()
        out["target_text"] = frame[target_column(spec.task)].astype(str).to_numpy()
        for stage in ("query", "target"):
            for component in REGISTRY.of_stage(stage, names):
                column = TEXT_COLUMN[stage]
                with self.timed(component.name):
                    text = self._cached_text(component, out, context)
                    if component.combine == "append":
                        text = (out[column].astype(str) + " " + text).str.rstrip()
                    out[column] = text.to_numpy()
        return out

    def _cached_text(self, component: Component, frame: pd.DataFrame,
                     context: Context) -> pd.Series:
        settings = context.settings(component.name)
        result = self.cache.get_or_compute(
            component.name, version=component.version,
            params=component.key_settings(settings, context),
            inputs=[frame_fingerprint(frame, component.reads_for(context.task)),
                    *component.inputs(settings, context)],
            compute=lambda: pd.DataFrame({"text": pd.Series(
                component.apply(frame, settings, context)).astype(str).to_numpy()}),
            kind="frame")
        return pd.Series(result["text"].to_numpy(), index=frame.index, dtype=str)

    # ---------------------------------------------------------------- row stages

    def refine(self, train: pd.DataFrame, spec: TrialSpec, *, checker: Any = None,
               truth: pd.DataFrame | None = None,
               progress: bool = False) -> tuple[pd.DataFrame, list[RowsResult]]:
        """The training rows the trial's rows-stage components keep (QR), with their results."""
        context = self.context(spec, checker=checker, truth=truth, progress=progress)
        results = []
        for component in REGISTRY.of_stage("rows", spec.components):
            with self.timed(component.name):
                result = component.apply(train, context.settings(component.name), context)
            train = result.kept
            results.append(result)
        return train, results

    # ----------------------------------------------------------------- prompts

    def prompts(self, rows: pd.DataFrame, spec: TrialSpec, *, pool: pd.DataFrame | None = None,
                same_rows: bool = False, components: tuple[str, ...] | None = None) -> list[str]:
        """Prompts for `rows` (already carrying query_text/target_text)."""
        names = spec.components if components is None else components
        context = self.context(spec)
        parts = PromptParts(rows=rows, pool=pool, same_rows=same_rows)
        for component in REGISTRY.of_stage("prompt", names):
            with self.timed(component.name):
                parts = component.apply(parts, context.settings(component.name), context)
        task, cot, examples = spec.task, parts.cot_version, parts.examples
        texts = prompts.prompt_texts(task, cot_version=cot)
        with self.timed("prompts"):
            frame = self.cache.get_or_compute(
                "prompts", version=prompts.TEMPLATE_VERSION,
                params={"task": task, "cot": cot, "texts": stable_hash(texts),
                        "examples": stable_hash([[(e.query, e.target, e.label) for e in r]
                                                 for r in examples]) if examples else None},
                inputs=[frame_fingerprint(rows, ["query_text", "target_text"])],
                compute=lambda: pd.DataFrame({"prompt": prompts.build_prompts(
                    rows, task=task, cot_version=cot, examples=examples)}),
                kind="frame")
            return list(frame["prompt"])

    def prompt_texts(self, spec: TrialSpec) -> dict[str, str]:
        """Every text file the trial's prompts use (for logging)."""
        parts = PromptParts(rows=pd.DataFrame(), pool=None, same_rows=False, texts_only=True)
        context = self.context(spec)
        for component in REGISTRY.of_stage("prompt", spec.components):
            parts = component.apply(parts, context.settings(component.name), context)
        return prompts.prompt_texts(spec.task, cot_version=parts.cot_version)

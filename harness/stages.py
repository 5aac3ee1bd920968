"""Cached stages between loaded data and prompts.

Text components (LT, HCT, SIT, DG) are per-row functions of the raw fields, so each one runs once
per raw split and is cached by (component, settings, input fingerprint); a trial assembles
`query_text` / `target_text` from the cached pieces. QR runs on the training rows only and
returns the ids it keeps; ICL selects examples from the trial's training rows; prompts are built
last. Every stage goes through the StageCache.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.cache import StageCache, frame_fingerprint, stable_hash
from harness.components import describe, prompts, qr, tagging
from harness.config import QRThresholds, SweepConfig
from harness.data import target_column
from harness.data.loader import TaskData
from harness.data.split import holdout_split, leave_language_out, stratified_subsample
from harness.errors import DataError

TEXT_VERSION = {"LT": "1", "HCT": "1", "SIT": "1", "DG": "1"}
QR_VERSION = "1"
ICL_VERSION = "1"


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
    """Runs and caches the component stages for one sweep."""

    def __init__(self, *, config: SweepConfig, cache: StageCache,
                 qc_train: pd.DataFrame | None = None) -> None:
        self.config = config
        self.cache = cache
        self.qc_train = qc_train
        self._vocab = None
        self._describer = None

    def evaluation_sets(self, task_data: TaskData, *, heldout_language: str | None = None,
                        truth: pd.DataFrame | None = None) -> EvalSets:
        """Choose the evaluation rows (DESIGN.md section 2): a labelled test or dev split, else a
        holdout of train grouped by query (cached); optionally hold one language out of training."""
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
            train, evaluation = self._holdout(train, task_data.task)
        else:
            split = task_data.test if choice == "test" else task_data.dev
            if split is None or not split.labelled:
                raise DataError(f"data.eval.split is '{choice}' but {choice}_{task_data.task}.txt "
                                "is missing or not fully labelled")
            evaluation = split.frame
        if config.data.max_train_rows is not None:
            train = stratified_subsample(train, n=config.data.max_train_rows, seed=0)
        name = choice
        if heldout_language is not None:
            train, _ = leave_language_out(train, language=heldout_language)
            evaluation = evaluation[evaluation["language"] == heldout_language].reset_index(drop=True)
            if evaluation.empty:
                raise DataError(f"no {task_data.task} evaluation rows in language '{heldout_language}'")
            name = f"{choice}-{heldout_language}"
        return EvalSets(task_data.task, train.reset_index(drop=True),
                        evaluation.reset_index(drop=True), name, unlabelled, truth)

    def _holdout(self, train: pd.DataFrame, task: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        settings = self.config.data.eval
        inputs = [frame_fingerprint(train, ["id", "language", "origin_query", "label"])]

        def compute() -> np.ndarray:
            _, evaluation = holdout_split(train, fraction=settings.holdout_fraction,
                                          seed=settings.holdout_seed)
            return train["id"].isin(set(evaluation["id"])).to_numpy()

        is_eval = self.cache.get_or_compute(
            "holdout", version="1", params={"fraction": settings.holdout_fraction,
                                            "seed": settings.holdout_seed},
            inputs=inputs, compute=compute, kind="array")
        return (train[~is_eval].reset_index(drop=True), train[is_eval].reset_index(drop=True))

    # ---------------------------------------------------------------- text stages

    def text_columns(self, frame: pd.DataFrame, *, task: str,
                     components: tuple[str, ...]) -> pd.DataFrame:
        """`frame` plus `query_text` and `target_text` as the trial's components shape them."""
        out = frame.copy()
        target = target_column(task)
        query_text = frame["origin_query"].astype(str)
        target_text = frame[target].astype(str)
        if "LT" in components:
            query_text = self._cached_column("LT", frame, ["origin_query", "language"], {},
                                             lambda: tagging.language_tag(frame["origin_query"],
                                                                          frame["language"]))
        if "HCT" in components:
            mode = self.config.components.HCT.split
            target_text = self._cached_column(
                "HCT", frame, [target], {"split": mode},
                lambda: tagging.hierarchical_category_tag(frame[target], mode=mode))
        suffixes = []
        if "SIT" in components:
            suffixes.append(self._attribute_tags(frame))
        if "DG" in components:
            suffixes.append(self._descriptions(frame))
        for suffix in suffixes:
            target_text = (target_text + " " + suffix).str.rstrip()
        out["query_text"] = query_text.to_numpy()
        out["target_text"] = target_text.to_numpy()
        return out

    def _cached_column(self, stage: str, frame: pd.DataFrame, columns: list[str], params: dict,
                       compute: Callable[[], pd.Series], extra_inputs: tuple[str, ...] = ()) -> pd.Series:
        result = self.cache.get_or_compute(
            stage, version=TEXT_VERSION[stage], params=params,
            inputs=[frame_fingerprint(frame, columns), *extra_inputs],
            compute=lambda: pd.DataFrame({"text": pd.Series(compute()).astype(str).to_numpy()}),
            kind="frame")
        return pd.Series(result["text"].to_numpy(), index=frame.index, dtype=str)

    def _vocabulary(self):
        if self._vocab is None:
            self._vocab = tagging.load_attribute_vocab(self.config.components.SIT.vocab)
        return self._vocab

    def _attribute_tags(self, frame: pd.DataFrame) -> pd.Series:
        settings = self.config.components.SIT
        use_leaf = settings.qc_leaf and self.qc_train is not None
        leaf_input = (frame_fingerprint(self.qc_train, ["origin_query", "category_path", "label"])
                      if use_leaf else "no-qc-leaf")

        def compute() -> pd.Series:
            leaves = tagging.qc_leaf_lookup(self.qc_train) if use_leaf else None
            return tagging.attribute_tags(frame, vocab=self._vocabulary(), qc_leaf=leaves)

        params = {"vocab": self._vocabulary().digest, "qc_leaf": use_leaf}
        return self._cached_column("SIT", frame, ["origin_query", "item_title"], params, compute,
                                   (leaf_input,))

    def _descriptions(self, frame: pd.DataFrame) -> pd.Series:
        settings = self.config.components.DG
        if self._describer is None:
            self._describer = describe.make_describer(settings)
        generator = self._describer

        def compute() -> list[str]:
            attributes = tagging.extract_attributes(frame["item_title"], vocab=self._vocabulary())
            return describe.generate_descriptions(list(frame["item_title"]), attributes,
                                                  generator=generator)

        params = {"generator": generator.name, "generator_version": generator.version,
                  **settings.model_dump(mode="json"), "vocab": self._vocabulary().digest}
        return self._cached_column("DG", frame, ["item_title"], params, compute)

    # ------------------------------------------------------------------------ QR

    def quality_refinement(self, train: pd.DataFrame, *, task: str,
                           checker: Callable[[pd.DataFrame, pd.DataFrame], np.ndarray] | None,
                           checker_identity: dict, seed: int,
                           overrides: dict | None = None) -> qr.QRResult:
        """Refine training rows; the checker's out-of-fold p(yes) is its own cached stage."""
        settings = self.config.components.QR
        if overrides:
            settings = settings.model_copy(update={"thresholds": _merge_thresholds(settings, overrides)})
        train_print = frame_fingerprint(train, ["id", "language", "origin_query",
                                                target_column(task), "label"])
        p_yes = None
        if settings.use_model:
            if checker is None:
                raise ValueError("QR.use_model needs a checker")
            params = {"folds": settings.folds, "in_sample": settings.in_sample, "seed": seed,
                      "checker": checker_identity}
            p_yes = self.cache.get_or_compute(
                "QR-checker", version=QR_VERSION, params=params, inputs=[train_print],
                compute=lambda: qr.out_of_fold_p_yes(train, fit_predict=checker,
                                                     folds=settings.folds, seed=seed,
                                                     in_sample=settings.in_sample),
                kind="array")
        result = qr.refine(train, task=task, config=settings, p_yes=p_yes)
        return result

    # ----------------------------------------------------------------- prompts

    def icl_examples(self, rows: pd.DataFrame, pool: pd.DataFrame, *,
                     same_rows: bool) -> list[list[prompts.Example]]:
        settings = self.config.components.ICL
        columns = ["id", "query_text", "target_text"]
        indices = self.cache.get_or_compute(
            "ICL", version=ICL_VERSION,
            params={**settings.model_dump(mode="json"), "same_rows": same_rows},
            inputs=[frame_fingerprint(rows, [*columns, "language"]),
                    frame_fingerprint(pool, [*columns, "language", "label"])],
            compute=lambda: _pad(prompts.select_examples(
                rows, pool, k=settings.k, strategy=settings.strategy, seed=settings.seed,
                exclude_same_id=same_rows), settings.k),
            kind="array")
        queries = pool["query_text"].to_numpy()
        targets = pool["target_text"].to_numpy()
        labels = pool["label"].to_numpy(dtype=int)
        return [[prompts.Example(queries[j], targets[j], int(labels[j])) for j in row if j >= 0]
                for row in indices]

    def prompts(self, rows: pd.DataFrame, *, task: str, components: tuple[str, ...],
                pool: pd.DataFrame | None = None, same_rows: bool = False) -> list[str]:
        """Prompts for `rows` (already carrying query_text/target_text)."""
        cot = self.config.components.CoT.version if "CoT" in components else None
        examples = None
        if "ICL" in components:
            if pool is None:
                raise ValueError("ICL needs the training pool")
            examples = self.icl_examples(rows, pool, same_rows=same_rows)
        texts = prompts.prompt_texts(task, cot_version=cot)
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


def _pad(indices: list[list[int]], k: int) -> np.ndarray:
    out = np.full((len(indices), k), -1, dtype=np.int64)
    for i, row in enumerate(indices):
        out[i, :len(row)] = row[:k]
    return out


def _merge_thresholds(settings, overrides: dict):
    """Per-language thresholds from a search: keys `qr.<lang>.<hi_cos|hi_jac|lo_cos|lo_jac>`."""
    fixed = {} if settings.thresholds == "auto" else dict(settings.thresholds)
    by_language: dict[str, dict[str, float]] = {}
    for key, value in overrides.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "qr":
            by_language.setdefault(parts[1], {})[parts[2]] = float(value)
    for language, values in by_language.items():
        fixed[language] = QRThresholds(**values)
    return fixed or "auto"

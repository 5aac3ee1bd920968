"""The typed record of a trial: what it is (from its TrialSpec) and what it produced (metrics,
where its per-row predictions are), with one mapping to and from an MLflow run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from harness.plan import TrialSpec

TRIAL_KEY_TAG = "harness.trial_key"
# Set on a trial that learned nothing (one class, or F1 not above all-"yes"): the reason.
DEGENERATE_TAG = "harness.degenerate"
MACHINE_TAG = "harness.machine"
# What a trial costs: its QR checker fine-tune, its training and its scoring (seconds).
COST_METRICS = ("checker_seconds", "train_seconds", "score_seconds")
_TAGS = {"task": "harness.task", "components": "harness.components", "seed": "harness.seed",
         "model": "harness.model", "heldout_language": "harness.heldout_language",
         "role": "harness.trial_role", "rows": "harness.rows", "eval_split": "harness.eval_split"}
_ROWS_SEPARATOR = " | "


@dataclass
class TrialRecord:
    key: str
    name: str
    task: str
    components: tuple[str, ...]
    seed: int
    model: str
    heldout_language: str | None = None
    role: str = "planned"
    rows: tuple[str, ...] = ()
    eval_split: str = ""
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    status: str = "RUNNING"
    run_id: str = ""
    start_time: int = 0
    pruned: bool = False
    error: str | None = None
    degenerate: str | None = None  # why the trial learned nothing; such trials get no verdict
    machine: str = ""  # where it ran (platform, cores, GPU): the report's footer lists them
    # Per-row predictions on the evaluation rows (id, language, label, p_yes, prediction);
    # loaded on demand from the run's artifact `predictions_artifact`.
    predictions: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return "+".join(self.components) or "baseline"

    @property
    def predictions_artifact(self) -> str:
        return f"predictions/{self.eval_split}.csv"

    @classmethod
    def from_spec(cls, spec: TrialSpec, *, eval_split: str, train_rows: int,
                  eval_rows: int) -> TrialRecord:
        params = {k: str(v) for k, v in spec.params().items()}
        params.update({"eval_split": eval_split, "train_rows": str(train_rows),
                       "eval_rows": str(eval_rows)})
        return cls(key=spec.key, name=spec.name, task=spec.task, components=spec.components,
                   seed=spec.seed, model=spec.model, heldout_language=spec.heldout_language,
                   role=spec.role, rows=spec.rows, eval_split=eval_split, params=params)

    def tags(self) -> dict[str, str]:
        values = {"task": self.task, "components": self.label, "seed": str(self.seed),
                  "model": self.model, "heldout_language": self.heldout_language or "",
                  "role": self.role, "rows": _ROWS_SEPARATOR.join(self.rows),
                  "eval_split": self.eval_split}
        return {TRIAL_KEY_TAG: self.key, **{_TAGS[k]: v for k, v in values.items()}}

    def to_mlflow(self) -> tuple[dict[str, str], dict[str, float], dict[str, str]]:
        """(params, metrics, tags) as they are logged."""
        tags = self.tags()
        if self.pruned:
            tags["harness.pruned"] = "true"
        if self.degenerate:
            tags[DEGENERATE_TAG] = self.degenerate
        return dict(self.params), dict(self.metrics), tags

    @classmethod
    def from_mlflow(cls, run: Any) -> TrialRecord:
        """From an `mlflow.entities.Run` logged by `to_mlflow`."""
        tags = run.data.tags

        def tag(name: str) -> str:
            return tags.get(_TAGS[name], "")

        components = tag("components")
        return cls(
            key=tags.get(TRIAL_KEY_TAG, ""), name=tags.get("mlflow.runName", ""), task=tag("task"),
            components=() if components in ("", "baseline") else tuple(components.split("+")),
            seed=int(tag("seed") or 0), model=tag("model"),
            heldout_language=tag("heldout_language") or None, role=tag("role") or "planned",
            rows=tuple(r for r in tag("rows").split(_ROWS_SEPARATOR) if r),
            eval_split=tag("eval_split"), params=dict(run.data.params),
            metrics=dict(run.data.metrics), status=run.info.status, run_id=run.info.run_id,
            start_time=int(run.info.start_time or 0),
            pruned=tags.get("harness.pruned") == "true", error=tags.get("harness.error"),
            degenerate=tags.get(DEGENERATE_TAG) or None, machine=tags.get(MACHINE_TAG, ""))


__all__ = ["COST_METRICS", "DEGENERATE_TAG", "MACHINE_TAG", "TRIAL_KEY_TAG", "TrialRecord"]

"""One trial: cached stages -> prompts -> LoRA train -> yes/no scoring -> metrics -> MLflow."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.data.split import normalised_query
from harness.learner import LoadedModel, fresh_adapter, score_yes_no, train_lora
from harness.paired import learned_nothing
from harness.plan import TrialSpec
from harness.record import DEGENERATE_TAG
from harness.stages import EvalSets, Stages
from harness.stats import trial_metrics
from harness.tracking import Tracker

EpochHook = Callable[[int, float, float], None]  # (epoch, train loss, eval F1)


@dataclass
class TrialOutcome:
    metrics: dict[str, float]
    predictions: pd.DataFrame
    step_losses: list[float]
    degenerate: str | None = None  # why the trial learned nothing (see paired.learned_nothing)


def make_checker(get_model: Callable[[], LoadedModel], spec: TrialSpec, stages: Stages, *,
                 progress: bool) -> Callable[[pd.DataFrame, pd.DataFrame], np.ndarray]:
    """A checker for QR's model signal: the harness's own LoRA learner on baseline prompts (no
    components). The model is fetched only when a prediction is needed (not when cached)."""
    config, seed, none = spec.config, spec.seed, ()

    def fit_predict(train_rows: pd.DataFrame, predict_rows: pd.DataFrame) -> np.ndarray:
        loaded = get_model()
        train_text = stages.text_columns(train_rows, spec, components=none)
        predict_text = stages.text_columns(predict_rows, spec, components=none)
        with fresh_adapter(loaded, lora=config.lora, seed=seed):
            trained = train_lora(loaded, prompts=stages.prompts(train_text, spec, components=none),
                                 labels=train_rows["label"].to_numpy(dtype=int),
                                 training=config.training, seed=seed, progress=progress,
                                 description="checker")
            checker_seconds.append(trained.seconds)
            return score_yes_no(loaded, prompts=stages.prompts(predict_text, spec, components=none),
                                batch_size=config.scoring.batch_size,
                                max_length=config.training.max_length)

    checker_seconds: list[float] = []
    fit_predict.seconds = checker_seconds  # type: ignore[attr-defined]
    return fit_predict


def run_trial(spec: TrialSpec, *, sets: EvalSets, stages: Stages, loaded: LoadedModel,
              tracker: Tracker, run_id: str, progress: bool = True,
              epoch_hook: EpochHook | None = None,
              checker: Callable[[], LoadedModel] | None = None) -> TrialOutcome:
    """Train and score one trial with its resolved config, logging everything to its run."""
    config = spec.config
    train_text = stages.text_columns(sets.train, spec)
    metrics: dict[str, float] = {}

    fit_predict = make_checker(checker or (lambda: loaded), spec, stages, progress=progress)
    kept, results = stages.refine(sets.train, spec, checker=fit_predict, truth=sets.truth,
                                  progress=progress)
    for result in results:
        metrics.update(result.metrics)
        for name, artifact in result.artifacts.items():
            if isinstance(artifact, pd.DataFrame):
                tracker.log_frame(run_id, artifact, name)
            else:
                tracker.log_text(run_id, artifact, name)
    if results:
        train_text = train_text[train_text["id"].isin(set(kept["id"]))].reset_index(drop=True)
    if fit_predict.seconds:
        metrics["checker_seconds"] = float(sum(fit_predict.seconds))

    eval_text = stages.text_columns(sets.evaluation, spec)
    train_prompts = stages.prompts(train_text, spec, pool=train_text, same_rows=True)
    eval_prompts = stages.prompts(eval_text, spec, pool=train_text)
    tracker.log_text(run_id, train_prompts[0], "prompts/example_train_prompt.txt")
    tracker.log_dict(run_id, stages.prompt_texts(spec), "prompts/texts.json")
    labels = train_text["label"].to_numpy(dtype=int)

    with fresh_adapter(loaded, lora=config.lora, seed=spec.seed):
        on_epoch_end = None
        if epoch_hook is not None:
            def on_epoch_end(epoch: int, loss: float) -> None:
                p_yes = score_yes_no(loaded, prompts=eval_prompts, batch_size=config.scoring.batch_size,
                                     max_length=config.training.max_length)
                f1 = trial_metrics(_prediction_frame(eval_text, p_yes, config.scoring.threshold),
                                   seen_languages=())["f1"]
                tracker.log_metrics(run_id, {"eval_f1_epoch": f1}, step=epoch)
                epoch_hook(epoch, loss, f1)

        trained = train_lora(loaded, prompts=train_prompts, labels=labels, training=config.training,
                             seed=spec.seed, on_epoch_end=on_epoch_end, progress=progress,
                             description=spec.name)
        started = time.perf_counter()
        p_yes = score_yes_no(loaded, prompts=eval_prompts, batch_size=config.scoring.batch_size,
                             max_length=config.training.max_length, progress=progress)
        score_seconds = time.perf_counter() - started
        unlabelled = {}
        if config.scoring.predict_unlabelled:
            for split, frame in sets.unlabelled.items():
                split_text = stages.text_columns(frame, spec)
                split_prompts = stages.prompts(split_text, spec, pool=train_text)
                unlabelled[split] = _prediction_frame(split_text, score_yes_no(
                    loaded, prompts=split_prompts, batch_size=config.scoring.batch_size,
                    max_length=config.training.max_length), config.scoring.threshold)

    predictions = _prediction_frame(eval_text, p_yes, config.scoring.threshold)
    metrics.update(trial_metrics(predictions, seen_languages=sets.seen_languages))
    degenerate = learned_nothing(predictions) if "label" in predictions else None
    if degenerate:
        tracker.set_tags(run_id, {DEGENERATE_TAG: degenerate})
    metrics.update({
        "train_seconds": trained.seconds, "train_examples_per_second": trained.examples_per_second,
        "score_seconds": score_seconds,
        "score_examples_per_second": len(eval_prompts) / max(score_seconds, 1e-9),
        "train_rows_used": float(len(train_prompts)), "truncated_prompts": float(trained.truncated),
        "final_train_loss": trained.epoch_losses[-1] if trained.epoch_losses else float("nan"),
    })
    tracker.log_series(run_id, "train_loss", trained.step_losses)
    tracker.log_series(run_id, "train_loss_epoch", trained.epoch_losses)
    tracker.log_metrics(run_id, metrics)
    tracker.log_frame(run_id, predictions, f"predictions/{sets.eval_name}.csv")
    for split, frame in unlabelled.items():
        tracker.log_frame(run_id, frame, f"predictions/unlabelled_{split}.csv")
    return TrialOutcome(metrics=metrics, predictions=predictions, step_losses=trained.step_losses,
                        degenerate=degenerate)


def _prediction_frame(rows: pd.DataFrame, p_yes: np.ndarray, threshold: float) -> pd.DataFrame:
    frame = pd.DataFrame({"id": rows["id"].astype(str).to_numpy(),
                          "language": rows["language"].to_numpy(),
                          # the query group: rows sharing a query are resampled together
                          "group": normalised_query(rows).to_numpy(),
                          "p_yes": np.round(p_yes, 6),
                          "prediction": (p_yes >= threshold).astype(int)})
    if "label" in rows and rows["label"].notna().all():
        frame.insert(2, "label", rows["label"].to_numpy(dtype=int))
    return frame


__all__ = ["TrialOutcome", "make_checker", "run_trial"]

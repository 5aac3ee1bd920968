"""One trial: cached stages -> prompts -> LoRA train -> yes/no scoring -> metrics -> MLflow."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.components import describe, prompts
from harness.config import SweepConfig
from harness.learner import LoadedModel, fresh_adapter, score_yes_no, train_lora
from harness.plan import TrialSpec
from harness.stages import EvalSets, Stages
from harness.stats import trial_metrics
from harness.tracking import Tracker

EpochHook = Callable[[int, float, float], None]  # (epoch, train loss, eval F1)


@dataclass
class TrialOutcome:
    metrics: dict[str, float]
    predictions: pd.DataFrame
    step_losses: list[float]


def effective_config(config: SweepConfig, spec: TrialSpec) -> SweepConfig:
    """The sweep config with the trial's search overrides (lora.r, training.learning_rate) applied."""
    overrides = spec.override_dict()
    lora = config.lora
    training = config.training
    if "lora.r" in overrides:
        lora = lora.model_copy(update={"r": int(overrides["lora.r"])})
    if "training.learning_rate" in overrides:
        training = training.model_copy(update={"learning_rate": float(overrides["training.learning_rate"])})
    return config.model_copy(update={"lora": lora, "training": training})


def trial_params(config: SweepConfig, spec: TrialSpec, sets: EvalSets, *,
                 data_fingerprint: str) -> dict[str, object]:
    """Every switch, the task, model, LoRA/training hyperparameters, seed and data fingerprint."""
    params: dict[str, object] = {
        "task": spec.task, "seed": spec.seed, "model": spec.model,
        "components": spec.label, "data_fingerprint": data_fingerprint,
        "eval_split": sets.eval_name, "heldout_language": spec.heldout_language or "",
        "train_rows": len(sets.train), "eval_rows": len(sets.evaluation),
    }
    for name in ("QR", "LT", "HCT", "SIT", "DG", "ICL", "CoT"):
        params[name] = name in spec.components
        if name in spec.components:
            for key, value in getattr(config.components, name).model_dump(mode="json").items():
                params[f"{name}.{key}"] = value
    if "DG" in spec.components:
        params["DG.describer"] = describe.describer_key(describe.make_describer(config.components.DG))
    if "CoT" in spec.components or "ICL" in spec.components:
        params["prompt.template"] = prompts.TEMPLATE_VERSION
    for section in ("lora", "training", "scoring"):
        for key, value in getattr(config, section).model_dump(mode="json").items():
            params[f"{section}.{key}"] = value
    if spec.model == "tiny":
        for key, value in config.model.tiny.model_dump().items():
            params[f"model.tiny.{key}"] = value
    for key, value in spec.overrides:
        params[f"override.{key}"] = value
    return params


def make_checker(get_model: Callable[[], LoadedModel], config: SweepConfig, stages: Stages, *,
                 task: str, seed: int, progress: bool) -> Callable[[pd.DataFrame, pd.DataFrame], np.ndarray]:
    """QR's checker: the harness's own LoRA learner on baseline prompts (no components).
    The model is fetched only when a prediction is needed (not when the stage is cached)."""

    def fit_predict(train_rows: pd.DataFrame, predict_rows: pd.DataFrame) -> np.ndarray:
        loaded = get_model()
        train_text = stages.text_columns(train_rows, task=task, components=())
        predict_text = stages.text_columns(predict_rows, task=task, components=())
        with fresh_adapter(loaded, lora=config.lora, seed=seed):
            train_lora(loaded, prompts=stages.prompts(train_text, task=task, components=()),
                       labels=train_rows["label"].to_numpy(dtype=int), training=config.training,
                       seed=seed, progress=progress, description="QR checker")
            return score_yes_no(loaded, prompts=stages.prompts(predict_text, task=task, components=()),
                                batch_size=config.scoring.batch_size,
                                max_length=config.training.max_length)

    return fit_predict


def run_trial(spec: TrialSpec, *, config: SweepConfig, sets: EvalSets, stages: Stages,
              loaded: LoadedModel, tracker: Tracker, run_id: str, progress: bool = True,
              epoch_hook: EpochHook | None = None,
              checker: Callable[[], LoadedModel] | None = None) -> TrialOutcome:
    """Train and score one trial, logging everything to its MLflow run."""
    config = effective_config(config, spec)
    task, components = spec.task, spec.components
    train_text = stages.text_columns(sets.train, task=task, components=components)
    metrics: dict[str, float] = {}

    if "QR" in components:
        checker_model = config.components.QR.checker_model or spec.model
        fit_predict = make_checker(checker or (lambda: loaded), config, stages, task=task,
                                   seed=spec.seed, progress=progress)
        identity = {"model": checker_model, "lora": config.lora.model_dump(mode="json"),
                    "training": config.training.model_dump(mode="json")}
        refined = stages.quality_refinement(sets.train, task=task, checker=fit_predict,
                                            checker_identity=identity, seed=spec.seed,
                                            overrides=spec.override_dict())
        kept = set(refined.kept["id"])
        train_text = train_text[train_text["id"].isin(kept)].reset_index(drop=True)
        metrics.update(_qr_metrics(refined, sets, tracker, run_id))

    eval_text = stages.text_columns(sets.evaluation, task=task, components=components)
    train_prompts = stages.prompts(train_text, task=task, components=components,
                                   pool=train_text, same_rows=True)
    eval_prompts = stages.prompts(eval_text, task=task, components=components, pool=train_text)
    tracker.log_text(run_id, train_prompts[0], "prompts/example_train_prompt.txt")
    cot = config.components.CoT.version if "CoT" in components else None
    tracker.log_dict(run_id, prompts.prompt_texts(task, cot_version=cot), "prompts/texts.json")
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
                split_text = stages.text_columns(frame, task=task, components=components)
                split_prompts = stages.prompts(split_text, task=task, components=components,
                                               pool=train_text)
                unlabelled[split] = _prediction_frame(split_text, score_yes_no(
                    loaded, prompts=split_prompts, batch_size=config.scoring.batch_size,
                    max_length=config.training.max_length), config.scoring.threshold)

    predictions = _prediction_frame(eval_text, p_yes, config.scoring.threshold)
    metrics.update(trial_metrics(predictions, seen_languages=sets.seen_languages))
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
    return TrialOutcome(metrics=metrics, predictions=predictions, step_losses=trained.step_losses)


def _prediction_frame(rows: pd.DataFrame, p_yes: np.ndarray, threshold: float) -> pd.DataFrame:
    frame = pd.DataFrame({"id": rows["id"].astype(str).to_numpy(),
                          "language": rows["language"].to_numpy(),
                          "p_yes": np.round(p_yes, 6),
                          "prediction": (p_yes >= threshold).astype(int)})
    if "label" in rows and rows["label"].notna().all():
        frame.insert(2, "label", rows["label"].to_numpy(dtype=int))
    return frame


def _qr_metrics(refined, sets: EvalSets, tracker: Tracker, run_id: str) -> dict[str, float]:
    from harness.components import qr

    audit = refined.audit
    tracker.log_frame(run_id, audit, "qr/audit.csv")
    tracker.log_text(run_id, json.dumps({k: v.model_dump() for k, v in refined.thresholds.items()},
                                        indent=2), "qr/thresholds.json")
    metrics = {"qr/removed": float(audit["flagged"].sum()),
               "qr/removed_fraction": float(audit["flagged"].mean()) if len(audit) else 0.0}
    if sets.truth is not None:
        scored = qr.score_audit(audit, truth=sets.truth)
        tracker.log_frame(run_id, scored, "qr/audit_scores.csv")
        for _, row in scored.iterrows():
            for name in ("precision", "recall", "f1"):
                metrics[f"qr/{name}/{row['language']}"] = float(row[name])
    return metrics


__all__ = ["TrialOutcome", "effective_config", "make_checker", "run_trial", "trial_params"]

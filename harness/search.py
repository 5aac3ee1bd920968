"""Optuna search over continuous knobs: per-language QR thresholds, optionally LoRA r and the
learning rate. One study per task; eval F1 is reported after each epoch so the pruner can stop
weak trials early. Resuming counts finished trials, so a rerun only tops the budget up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

from harness.config import APPLICABLE_TASKS, SweepConfig
from harness.data import TRAIN_LANGUAGES
from harness.plan import TrialSpec, keyed, models_of, ordered

# Ranges wide enough to include the reference's quantile defaults and clamps (DESIGN.md 7).
THRESHOLD_RANGES = {"hi_cos": (0.1, 0.9), "hi_jac": (0.05, 0.8),
                    "lo_cos": (0.0, 0.5), "lo_jac": (0.0, 0.4)}


def search_languages(config: SweepConfig, task: str) -> list[str]:
    return list(config.design.optuna.qr_languages or TRAIN_LANGUAGES[task])


def suggest_overrides(trial: optuna.Trial, config: SweepConfig, task: str) -> dict[str, Any]:
    """The knob values of one search trial, as `TrialSpec.overrides` keys."""
    search = config.design.optuna
    values: dict[str, Any] = {}
    if search.search_qr_thresholds:
        for language in search_languages(config, task):
            for name, (low, high) in THRESHOLD_RANGES.items():
                values[f"qr.{language}.{name}"] = round(trial.suggest_float(f"{language}.{name}", low, high), 4)
    for name, param in search.params.items():
        if param.type == "int":
            values[name] = trial.suggest_int(name, int(param.low), int(param.high), log=param.log,
                                             step=int(param.step or 1))
        else:
            values[name] = trial.suggest_float(name, param.low, param.high, log=param.log,
                                               step=param.step)
    return values


def run_search(config: SweepConfig, *, worker, url: str,
               open_study: Callable[..., optuna.Study]) -> None:
    """Run each task's search study up to its trial budget (counting trials already done)."""
    search = config.design.optuna
    components = frozenset(config.design.switches) | frozenset(config.design.always_on)
    for model in models_of(config):
        for task in config.tasks:
            study = open_study(config, url=url, name=f"{config.name}.{task}.{model}.search")
            done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
            if done >= search.n_trials:
                print(f"Search {task} ({model}): {done} of {search.n_trials} trials already done", flush=True)
                continue
            applicable = ordered(frozenset(c for c in components if task in APPLICABLE_TASKS[c]))

            def objective(trial: optuna.Trial, task: str = task, applicable=applicable,
                          model: str = model) -> float:
                overrides = tuple(sorted(suggest_overrides(trial, config, task).items()))
                spec = keyed(TrialSpec(task, applicable, config.seeds[0], model, None, overrides,
                                       ("search",)),
                             config, data_fingerprint=worker.data.fingerprints[task])
                worker.specs[spec.key] = spec
                trial.set_user_attr("trial_key", spec.key)
                worker.done += 1
                return worker.run(spec, trial, position=f"search {task} {trial.number + 1}/{search.n_trials}")

            study.optimize(objective, catch=(Exception,), gc_after_trial=True,
                           callbacks=[MaxTrialsCallback(search.n_trials,
                                                        states=(TrialState.COMPLETE, TrialState.PRUNED))])
            best = study.best_trial if any(t.state == TrialState.COMPLETE for t in study.trials) else None
            if best is not None:
                knobs = ", ".join(f"{k}={v:.3g}" for k, v in best.params.items())
                print(f"Search {task} ({model}): best F1 {best.value:.4f} (trial {best.number}) "
                      f"with {knobs}", flush=True)

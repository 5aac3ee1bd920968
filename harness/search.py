"""Optuna search over continuous knobs of one configuration: per-language QR thresholds and any
numeric setting named by its schema path (`lora.r`, `training.learning_rate`, ...).

One study per (task, model), driven by `ask`/`tell`. Every search trial trains on the training
rows minus a search split and is scored on that split (never on the evaluation rows); eval F1 is
reported after each epoch so the study's own pruner can stop weak trials. The budget counts
every finished trial (complete, pruned or failed), so a search whose every trial fails stops and
says so. Once the budget is spent, the best configuration is trained again on all training rows
and scored once on the evaluation rows, as an ordinary trial of the plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from harness.cache import stable_hash
from harness.components import REGISTRY
from harness.config import SweepConfig
from harness.data import TRAIN_LANGUAGES
from harness.plan import Plan, TrialSpec, resolve_trial
from harness.secrets import error_message
from harness.study import (
    ERROR_ATTR,
    FINISHED_STATES,
    KEY_ATTR,
    mark_worker,
    open_study,
    planning_lock,
)

SAMPLERS = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler,
            "cmaes": optuna.samplers.CmaEsSampler, "qmc": optuna.samplers.QMCSampler}


@dataclass
class SearchOutcome:
    task: str
    model: str
    finished: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    best: TrialSpec | None = None
    best_value: float | None = None


def search_languages(config: SweepConfig, task: str) -> list[str]:
    return list(config.design.optuna.qr_languages or TRAIN_LANGUAGES[task])


def search_space(config: SweepConfig, task: str,
                 components: tuple[str, ...]) -> dict[str, optuna.distributions.BaseDistribution]:
    """Schema path -> Optuna distribution of every knob the search sets for `task`: the
    per-language thresholds the trial's components declare, then `design.optuna.params`."""
    search = config.design.optuna
    space: dict[str, optuna.distributions.BaseDistribution] = {}
    if search.search_qr_thresholds:
        for name in components:
            for path, (low, high) in REGISTRY[name].search_space(
                    search_languages(config, task)).items():
                space[path] = optuna.distributions.FloatDistribution(low, high)
    for path, param in search.params.items():
        space[path] = param.distribution()
    return space


def _sampler(config: SweepConfig, *, existing: int, worker: str) -> optuna.samplers.BaseSampler:
    """The search sampler, seeded from `seeds[0]`, the trials already in the study and the worker.

    A fresh search in one `sweep` process is reproducible (nothing existing, worker ""); a resumed
    search does not replay its first points, and two workers on one study do not propose the same
    parameters."""
    seed = int(stable_hash({"seed": config.seeds[0], "existing": existing, "worker": worker})[:8], 16)
    return SAMPLERS[config.design.optuna.sampler](seed=seed)


def _pruner(config: SweepConfig) -> optuna.pruners.BasePruner:
    search = config.design.optuna
    if search.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=search.startup_trials)
    if search.pruner == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def study_name(config: SweepConfig, task: str, model: str) -> str:
    return f"{config.name}.{task}.{model}.search"


def open_search_study(config: SweepConfig, *, url: str, task: str, model: str,
                      worker: str = "") -> optuna.Study:
    """The (task, model) search study; `worker` names a process other than the sweep's own."""
    with planning_lock(url, study_name(config, task, model)):
        study = open_study(config, url=url, name=study_name(config, task, model),
                           pruner=_pruner(config))
    study.sampler = _sampler(config, existing=len(study.get_trials(deepcopy=False)), worker=worker)
    return study


def _finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED_STATES))


def _best(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return max(complete, key=lambda t: t.value) if complete else None


def run_search(config: SweepConfig, plan: Plan, *, worker: Any, url: str,
               log: Any = print) -> list[SearchOutcome]:
    """Run each (task, model) search up to its budget, then the chosen configuration once."""
    search = config.design.optuna
    outcomes = []
    for base in [t for t in plan.trials if t.seed == config.seeds[0] and t.heldout_language is None]:
        task, model = base.task, base.model
        outcome = SearchOutcome(task, model)
        study = open_search_study(config, url=url, task=task, model=model,
                                  worker=getattr(worker, "identity", ""))
        space = search_space(config, task, base.components)
        done = _finished(study)
        if done >= search.n_trials:
            log(f"Search {task} ({model}): {done} of {search.n_trials} trials already done")
        while done < search.n_trials:
            trial = study.ask(space)
            mark_worker(trial)
            spec = resolve_trial(config, task=task, components=base.components,
                                 seed=base.seed, model=model, fingerprints=worker.data.fingerprints,
                                 overrides=trial.params, role="search", rows=("search",),
                                 base=base.key)
            trial.set_user_attr(KEY_ATTR, spec.key)
            worker.specs[spec.key] = spec
            position = f"search {task} {done + 1}/{search.n_trials}"
            try:
                value = worker.run(spec, trial, position=position)
            except optuna.TrialPruned:
                study.tell(trial, state=TrialState.PRUNED)
            except KeyboardInterrupt:
                study.tell(trial, state=TrialState.FAIL)
                raise
            except Exception as error:  # noqa: BLE001 - recorded, counted, and the search goes on
                message = error_message(error)
                trial.set_user_attr(ERROR_ATTR, message[:2000])
                study.tell(trial, state=TrialState.FAIL)
                outcome.failed.append((spec.name, message))
            else:
                study.tell(trial, value)
            done = _finished(study)
        outcome.finished = done
        best = _best(study)
        if best is None:
            log(f"Search {task} ({model}): no trial completed ({done} finished, "
                f"{len(outcome.failed)} failed in this run); nothing to choose")
            outcomes.append(outcome)
            continue
        knobs = ", ".join(f"{k.removeprefix('components.')}={v:.3g}" for k, v in best.params.items())
        log(f"Search {task} ({model}): best search-split F1 {best.value:.4f} (trial {best.number}) "
            f"with {knobs}")
        if getattr(worker, "identity", ""):  # a worker process: the sweep scores the best once
            outcomes.append(outcome)
            continue
        outcome.best = resolve_trial(config, task=task, components=base.components,
                                     seed=base.seed, model=model,
                                     fingerprints=worker.data.fingerprints,
                                     overrides=best.params, rows=("search best",), base=base.key)
        outcome.best_value = best.value
        worker.specs[outcome.best.key] = outcome.best
        try:
            worker.run(outcome.best, None, position=f"search {task} best")
        except Exception as error:  # noqa: BLE001
            outcome.failed.append((outcome.best.name, error_message(error)))
        outcomes.append(outcome)
    return outcomes


__all__ = ["SearchOutcome", "open_search_study", "run_search", "search_space", "study_name"]

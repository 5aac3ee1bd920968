"""The trial plan: design configurations expanded over tasks, seeds, models and held-out
languages into trial specs, each with a stable key (the identity used for resume)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.cache import stable_hash
from harness.config import COMPONENTS, SweepConfig
from harness.data import TRAIN_LANGUAGES
from harness.design import Configuration, plan_configurations


@dataclass(frozen=True)
class TrialSpec:
    """One training run: a task, the components on for it, a seed, a model and overrides."""

    task: str
    components: tuple[str, ...]
    seed: int
    model: str
    heldout_language: str | None = None
    # Knob values set by a search (e.g. {"qr.thresholds.en.hi_cos": 0.3, "lora.r": 8}).
    overrides: tuple[tuple[str, Any], ...] = ()
    # Labels of the design rows whose effective configuration for this task is this one.
    rows: tuple[str, ...] = field(default=(), compare=False)
    key: str = field(default="", compare=False)

    @property
    def label(self) -> str:
        return "+".join(self.components) or "baseline"

    @property
    def name(self) -> str:
        parts = [self.task, self.label, f"seed{self.seed}"]
        if self.heldout_language:
            parts.append(f"without-{self.heldout_language}")
        return " ".join(parts)

    def override_dict(self) -> dict[str, Any]:
        return dict(self.overrides)


@dataclass(frozen=True)
class Plan:
    configurations: list[Configuration]
    trials: list[TrialSpec]

    def for_model(self, model: str) -> list[TrialSpec]:
        return [t for t in self.trials if t.model == model]


def models_of(config: SweepConfig) -> list[str]:
    return list(config.design.models or [config.model.name])


def heldout_languages(config: SweepConfig, task: str) -> list[str | None]:
    """None (train on every language) plus, for leave-language-out, each language to hold out."""
    evaluation = config.data.eval
    if evaluation.protocol != "leave-language-out":
        return [None]
    languages = evaluation.languages or list(TRAIN_LANGUAGES[task])
    return [None, *languages]


def trial_identity(spec: TrialSpec, config: SweepConfig, *, data_fingerprint: str) -> dict[str, Any]:
    """Everything that determines a trial's result; its hash is the trial key."""
    settings = config.components.model_dump(mode="json")
    model = config.model.model_dump(mode="json")
    model["name"] = spec.model
    if spec.model != "tiny":
        model.pop("tiny")
    return {
        "task": spec.task,
        "components": {name: settings[name] for name in spec.components},
        "seed": spec.seed,
        "model": model,
        "lora": config.lora.model_dump(mode="json"),
        "training": config.training.model_dump(mode="json"),
        "scoring": config.scoring.model_dump(mode="json"),
        "data": {"fingerprint": data_fingerprint, "strict": config.data.strict,
                 "max_train_rows": config.data.max_train_rows,
                 "eval": config.data.eval.model_dump(mode="json", exclude={"protocol", "languages"})},
        "heldout_language": spec.heldout_language,
        "overrides": [list(item) for item in spec.overrides],
    }


def keyed(spec: TrialSpec, config: SweepConfig, *, data_fingerprint: str) -> TrialSpec:
    key = stable_hash(trial_identity(spec, config, data_fingerprint=data_fingerprint))[:16]
    return TrialSpec(spec.task, spec.components, spec.seed, spec.model, spec.heldout_language,
                     spec.overrides, spec.rows, key)


def ordered(components: frozenset[str]) -> tuple[str, ...]:
    return tuple(c for c in COMPONENTS if c in components)


def build_plan(config: SweepConfig, *, data_fingerprints: Mapping[str, str],
               overrides: tuple[tuple[str, Any], ...] = ()) -> Plan:
    """Every trial the design asks for, deduplicated by key, in design order."""
    configurations = plan_configurations(config.design)
    trials: dict[str, TrialSpec] = {}
    rows_of: dict[str, list[str]] = {}
    for model in models_of(config):
        for task in config.tasks:
            for configuration in configurations:
                components = ordered(configuration.effective(task))
                for language in heldout_languages(config, task):
                    for seed in config.seeds:
                        spec = keyed(TrialSpec(task, components, seed, model, language, overrides),
                                     config, data_fingerprint=data_fingerprints[task])
                        trials.setdefault(spec.key, spec)
                        rows_of.setdefault(spec.key, [])
                        if configuration.label not in rows_of[spec.key]:
                            rows_of[spec.key].append(configuration.label)
    specs = [TrialSpec(t.task, t.components, t.seed, t.model, t.heldout_language, t.overrides,
                       tuple(rows_of[k]), k) for k, t in trials.items()]
    return Plan(configurations=configurations, trials=specs)


__all__ = ["Plan", "TrialSpec", "build_plan", "keyed", "models_of", "ordered", "trial_identity"]

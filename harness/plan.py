"""The trial plan: design configurations expanded over tasks, seeds, models and held-out
languages into trial specs.

A `TrialSpec` is the one source of truth about a trial: its resolved config (the sweep config
with the trial's overrides applied by `apply_overrides`), the input fingerprints its numbers
depend on, its key (a hash of exactly what can change its numbers), and the MLflow params it
logs (the same facts, flattened).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from harness.cache import stable_hash
from harness.components import REGISTRY, Context
from harness.components.prompts import TEMPLATE_VERSION, stable_texts_digest
from harness.config import SweepConfig, apply_overrides
from harness.data import TRAIN_LANGUAGES
from harness.design import Configuration, make_design

Role = Literal["planned", "search"]
TINY = "tiny"


@dataclass(frozen=True)
class TrialSpec:
    """One training run: a task, the components on for it, a seed, a model and overrides."""

    task: str
    components: tuple[str, ...]
    seed: int
    model: str
    heldout_language: str | None = None
    # Settings a search sets, by schema path ({"lora.r": 8, "components.QR.thresholds...": 0.3}).
    overrides: tuple[tuple[str, Any], ...] = ()
    # planned: scored on the evaluation rows; search: trained and scored on the search split.
    role: Role = "planned"
    # Labels of the design rows whose effective configuration for this task is this one.
    rows: tuple[str, ...] = field(default=(), compare=False)
    config: SweepConfig | None = field(default=None, compare=False, repr=False)
    # For a search trial (and the search's chosen configuration): the key of the planned trial
    # whose configuration the search tunes.
    base: str | None = None
    # Fingerprints of every input the trial's numbers depend on (data, tokenizer corpus, ...).
    inputs: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def label(self) -> str:
        return REGISTRY.label(self.components)

    @property
    def name(self) -> str:
        parts = [self.task, self.label, f"seed{self.seed}"]
        if self.heldout_language:
            parts.append(f"without-{self.heldout_language}")
        if self.role == "search":
            parts.append("search")
        return " ".join(parts)

    def override_dict(self) -> dict[str, Any]:
        return dict(self.overrides)

    def context(self, **kwargs: Any) -> Context:
        return Context(config=self.config, task=self.task, seed=self.seed, trial=self, **kwargs)

    def model_identity(self, name: str | None = None) -> dict[str, Any]:
        """The base model's settings that change numbers (not device or trust_remote_code)."""
        model = self.config.model
        name = name or model.name
        identity: dict[str, Any] = {"name": name, "dtype": model.dtype}
        if name == TINY:
            identity["tiny"] = model.tiny.model_dump(mode="json")
            identity["tokenizer_corpus"] = self.inputs.get("tokenizer_corpus", "")
        return identity

    @cached_property
    def identity(self) -> dict[str, Any]:
        """Everything that can change this trial's numbers; its hash is the trial key."""
        config = self.config
        context = self.context()
        components = {}
        for name in self.components:
            component = REGISTRY[name]
            settings = context.settings(name)
            components[name] = {**component.key_settings(settings, context),
                                "version": component.version}
        evaluation = config.data.eval
        return {
            "task": self.task,
            "seed": self.seed,
            "heldout_language": self.heldout_language,
            "role": self.role,
            **({"search_base": self.base} if self.base else {}),
            "components": components,
            "model": self.model_identity(),
            "lora": config.lora.model_dump(mode="json"),
            "training": config.training.model_dump(mode="json"),
            "scoring": {"threshold": config.scoring.threshold},
            "prompt": {"template": TEMPLATE_VERSION,
                       "texts": stable_texts_digest(self.task, cot_version=None)},
            "data": {"strict": config.data.strict, "max_train_rows": config.data.max_train_rows,
                     "eval": {"split": evaluation.split,
                              "holdout_fraction": evaluation.holdout_fraction,
                              "holdout_seed": evaluation.holdout_seed}},
            "inputs": {k: v for k, v in sorted(self.inputs.items())
                       if k != "tokenizer_corpus" or self.model == TINY},
        }

    @cached_property
    def key(self) -> str:
        return stable_hash(self.identity)[:16]

    def checker_identity(self, model: str | None = None) -> dict[str, Any]:
        """What a checker model's p(yes) (QR's model signal) depends on besides its rows: the
        checker model (`model`, default the trial's), LoRA, training and the prompt template."""
        name = model
        identity = self.identity
        return {"model": self.model_identity(name), "lora": identity["lora"],
                "training": identity["training"], "prompt": identity["prompt"]}

    def params(self) -> dict[str, Any]:
        """MLflow params: the identity flattened to schema paths, plus every switch on/off."""
        identity = dict(self.identity)
        params: dict[str, Any] = {"components": self.label, "trial_role": self.role}
        for component in REGISTRY:
            params[component.name] = component.name in self.components
        params.update(flatten({k: identity[k] for k in ("task", "seed", "lora", "training",
                                                         "scoring", "data") if k in identity}))
        if self.base:
            params["search_base"] = self.base
        params["heldout_language"] = self.heldout_language or ""
        params.update(flatten({"model": identity["model"]}))
        params.update(flatten({"components": identity["components"]}))
        params.update(flatten({"inputs": identity["inputs"]}))
        params.update(flatten({"prompt": identity["prompt"]}))
        return params


def flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}` (lists and scalars are leaves)."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        path = f"{prefix}{key}"
        if isinstance(item, Mapping) and item:
            out.update(flatten(item, f"{path}."))
        else:
            out[path] = item
    return out


@dataclass(frozen=True)
class Plan:
    configurations: list[Configuration]
    trials: list[TrialSpec]
    tasks: tuple[str, ...] = ()
    description: str = ""

    def for_model(self, model: str) -> list[TrialSpec]:
        return [t for t in self.trials if t.model == model]

    @property
    def keys(self) -> set[str]:
        return {t.key for t in self.trials}

    def owns(self, record: Any) -> bool:
        """Whether a trial record belongs to this plan: one of its trials, or a search trial
        (or a search's chosen configuration) tuning one of them."""
        return record.key in self.keys or record.params.get("search_base") in self.keys


def models_of(config: SweepConfig) -> list[str]:
    return list(config.design.models or [config.model.name])


def heldout_languages(config: SweepConfig, task: str) -> list[str | None]:
    """None (train on every language) plus, for leave-language-out, each language to hold out."""
    evaluation = config.data.eval
    if evaluation.protocol != "leave-language-out":
        return [None]
    languages = evaluation.languages or list(TRAIN_LANGUAGES[task])
    return [None, *languages]


def tokenizer_fingerprint(config: SweepConfig, fingerprints: Mapping[str, str]) -> str:
    """What the built-in tokenizer is trained on: the component markers and every task's data
    in the data directory (not only the sweep's tasks, so a trial never depends on them)."""
    from harness.data.prepare import tokenizer_seed_texts

    return stable_hash({"seed_texts": stable_hash(tokenizer_seed_texts()),
                        "data": dict(sorted(fingerprints.items())),
                        "vocab_size": config.model.tiny.vocab_size})[:32]


def resolve_trial(config: SweepConfig, *, task: str, components: tuple[str, ...], seed: int,
                  model: str, fingerprints: Mapping[str, str],
                  heldout_language: str | None = None,
                  overrides: Mapping[str, Any] | None = None, role: Role = "planned",
                  rows: tuple[str, ...] = (), base: str | None = None) -> TrialSpec:
    """The trial with its resolved config and input fingerprints (so its key and params)."""
    overrides = dict(sorted((overrides or {}).items()))
    resolved = apply_overrides(config, {**overrides, "model.name": model})
    inputs = {"data": fingerprints[task],
              "tokenizer_corpus": tokenizer_fingerprint(resolved, fingerprints)}
    for name in components:
        settings = getattr(resolved.components, name)
        inputs.update(REGISTRY[name].input_fingerprints(settings, task=task,
                                                        fingerprints=fingerprints))
    return TrialSpec(task, REGISTRY.ordered(components), seed, model, heldout_language,
                     tuple(overrides.items()), role, rows, resolved, base, inputs)


def build_plan(config: SweepConfig, *, data_fingerprints: Mapping[str, str]) -> Plan:
    """Every trial the design asks for, deduplicated by key, in design order."""
    design = make_design(config.design)
    configurations = design.configurations()
    trials: dict[str, TrialSpec] = {}
    rows_of: dict[str, list[str]] = {}
    for model in models_of(config):
        for task in config.tasks:
            for configuration in configurations:
                components = REGISTRY.ordered(configuration.effective(task))
                for language in heldout_languages(config, task):
                    for seed in config.seeds:
                        spec = resolve_trial(config, task=task, components=components, seed=seed,
                                             model=model, fingerprints=data_fingerprints,
                                             heldout_language=language)
                        trials.setdefault(spec.key, spec)
                        labels = rows_of.setdefault(spec.key, [])
                        if configuration.label not in labels:
                            labels.append(configuration.label)
    specs = [dataclasses.replace(t, rows=tuple(rows_of[k])) for k, t in trials.items()]
    return Plan(configurations=configurations, trials=specs, tasks=tuple(config.tasks),
                description=design.describe())


__all__ = ["Plan", "TrialSpec", "build_plan", "flatten", "models_of", "resolve_trial"]

"""Typed schema of a sweep YAML file.

Every section is a pydantic model with `extra="forbid"`, so an unknown key, a wrong type or an
impossible value becomes a `ConfigError` whose one-line message names the key path
(`training.learning_rate: Input should be greater than 0`).
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import optuna
import yaml
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from harness.components import REGISTRY
from harness.components.base import Strict
from harness.data import LANGUAGES, TASKS
from harness.errors import ConfigError

Task = Literal["QC", "QI"]
Language = Literal[LANGUAGES]  # type: ignore[valid-type]
Fraction = Annotated[float, Field(gt=0, lt=1)]
Probability = Annotated[float, Field(ge=0, le=1)]


def applicable_components(task: str) -> tuple[str, ...]:
    """Components that act on `task`, in pipeline order."""
    return REGISTRY.for_task(task)


# --------------------------------------------------------------------------- data


class SynthConfig(Strict):
    """The built-in benchmark (`python -m harness data synth`)."""

    seed: int = 0
    scale: Literal["tiny", "small", "medium", "full"] = "small"
    # Label-noise rate in train, one number for all languages or one per language.
    noise: Probability | dict[Language, Probability] = 0.08


class EvalConfig(Strict):
    """Which labelled rows a trial is scored on."""

    # auto: the test split if it is labelled, else dev if labelled, else a holdout of train.
    split: Literal["auto", "test", "dev", "holdout"] = "auto"
    holdout_fraction: Fraction = 0.2
    holdout_seed: int = 0
    # leave-language-out: for each training language L, train without L and score L.
    protocol: Literal["standard", "leave-language-out"] = "standard"
    languages: list[Language] | None = None


class DataConfig(Strict):
    source: Literal["synth", "dir"] = "synth"
    dir: Path | None = None
    synth: SynthConfig = SynthConfig()
    # strict: rows with an empty query or target are an error instead of being dropped.
    strict: bool = False
    # Cap on training rows per task (stratified subsample); null keeps all.
    max_train_rows: Annotated[int, Field(gt=0)] | None = None
    eval: EvalConfig = EvalConfig()

    @model_validator(mode="after")
    def _dir_given(self) -> DataConfig:
        if self.source == "dir" and self.dir is None:
            raise ValueError("data.dir is required when data.source is 'dir'")
        return self


# -------------------------------------------------------------------------- model


class TinyModelConfig(Strict):
    """The built-in CPU model: a small Qwen2-architecture LM built from this config."""

    hidden_size: Annotated[int, Field(gt=0)] = 64
    num_layers: Annotated[int, Field(gt=0)] = 2
    num_heads: Annotated[int, Field(gt=0)] = 4
    num_kv_heads: Annotated[int, Field(gt=0)] = 2
    intermediate_size: Annotated[int, Field(gt=0)] = 128
    vocab_size: Annotated[int, Field(ge=300)] = 2000
    max_position_embeddings: Annotated[int, Field(gt=0)] = 1024
    seed: int = 0

    @model_validator(mode="after")
    def _heads_divide(self) -> TinyModelConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError("model.tiny.hidden_size must be a multiple of num_heads")
        if self.num_heads % self.num_kv_heads:
            raise ValueError("model.tiny.num_heads must be a multiple of num_kv_heads")
        return self


class ModelConfig(Strict):
    # "tiny" for the built-in CPU model, else a Hugging Face id or a local path.
    name: str = "tiny"
    tiny: TinyModelConfig = TinyModelConfig()
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: str = "auto"
    trust_remote_code: bool = False
    # Torch threads while training/scoring on a CPU; null: 1 for the tiny model (its operations
    # are too small to split), torch's default otherwise. Not part of the trial key.
    cpu_threads: Annotated[int, Field(gt=0)] | None = None


class LoraConfig(Strict):
    r: Annotated[int, Field(gt=0)] = 16
    alpha: Annotated[float, Field(gt=0)] = 16
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.05
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    # Also train the token embeddings (needed when the base model is randomly initialised).
    train_embeddings: bool = False
    # Also adapt the output layer (the DILAB reference did).
    train_lm_head: bool = False


class TrainingConfig(Strict):
    epochs: Annotated[float, Field(gt=0)] = 2
    learning_rate: Annotated[float, Field(gt=0)] = 1e-4
    batch_size: Annotated[int, Field(gt=0)] = 8
    gradient_accumulation: Annotated[int, Field(gt=0)] = 1
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] = 0.05
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    max_grad_norm: Annotated[float, Field(gt=0)] = 1.0
    max_length: Annotated[int, Field(gt=8)] = 1024
    gradient_checkpointing: bool = False


class ScoringConfig(Strict):
    batch_size: Annotated[int, Field(gt=0)] = 32
    threshold: Probability = 0.5
    # Also predict unlabelled dev/test files (logged per trial, for submissions).
    predict_unlabelled: bool = True


# --------------------------------------------------------------------- components


def components_model() -> type[BaseModel]:
    """`components:` — one section per registered component, its settings model as the type."""
    return _components_model(REGISTRY.revision)


@cache
def _components_model(revision: int) -> type[BaseModel]:
    fields: dict[str, Any] = {c.name: (c.settings, c.settings()) for c in REGISTRY}
    return create_model("ComponentsConfig", __base__=Strict, **fields)


ComponentsConfig = components_model()


# ------------------------------------------------------------------------- design


class SearchParam(Strict):
    """One knob of an Optuna search."""

    low: float
    high: float
    log: bool = False
    step: float | None = None
    type: Literal["float", "int"] = "float"

    @model_validator(mode="after")
    def _ordered(self) -> SearchParam:
        if not self.low < self.high:
            raise ValueError("low must be smaller than high")
        if self.log and self.low <= 0:
            raise ValueError("log scale needs low > 0")
        self.distribution()  # Optuna's own checks, before any trial runs
        return self

    def distribution(self) -> optuna.distributions.BaseDistribution:
        """The Optuna distribution of this knob (raises ValueError when Optuna refuses it)."""
        if self.type == "int":
            if self.low != int(self.low) or self.high != int(self.high):
                raise ValueError("an int knob needs whole-number low and high")
            return optuna.distributions.IntDistribution(
                int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log,
                                                      step=self.step)


class OptunaConfig(Strict):
    n_trials: Annotated[int, Field(gt=0)] = 20
    sampler: Literal["tpe", "random", "cmaes", "qmc"] = "tpe"
    pruner: Literal["none", "median", "successive-halving"] = "median"
    # Trials that finish before the median pruner starts stopping others.
    startup_trials: Annotated[int, Field(ge=0)] = 3
    # Per-language QR thresholds searched for these languages (null: every training language).
    qr_languages: list[Language] | None = None
    search_qr_thresholds: bool = True
    # Extra knobs: any numeric setting by its path in this schema ("lora.r",
    # "training.learning_rate", "components.QR.p_yes_hi", ...).
    params: dict[str, SearchParam] = {}


class DesignConfig(Strict):
    kind: Literal["grid", "cumulative", "leave-one-out", "fractional", "optuna"] = "grid"
    # Components switched on and off (for cumulative: in the order they are added).
    switches: list[str] = []
    # Components on in every trial.
    always_on: list[str] = []
    # Fractional factorial resolution (III, IV or V written as 3, 4, 5).
    resolution: Annotated[int, Field(ge=3, le=5)] = 4
    # Base model as an axis: the same ablation for each model (null: model.name only).
    models: list[str] | None = None
    optuna: OptunaConfig = OptunaConfig()

    @field_validator("switches", "always_on")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        unknown = [v for v in value if v not in REGISTRY]
        if unknown:
            raise ValueError(f"unknown component {unknown[0]!r} (expected one of "
                             f"{', '.join(REGISTRY.names)})")
        seen = [v for i, v in enumerate(value) if v in value[:i]]
        if seen:
            raise ValueError(f"component listed twice: {seen[0]}")
        return value

    @model_validator(mode="after")
    def _disjoint(self) -> DesignConfig:
        both = sorted(set(self.switches) & set(self.always_on))
        if both:
            raise ValueError(f"{both[0]} is in both switches and always_on")
        return self


# -------------------------------------------------------------------- run/tracking


class TrackingConfig(Strict):
    # null: $MLFLOW_TRACKING_URI if set, else MLflow's own default (sqlite:///mlflow.db).
    uri: str | None = None
    experiment: str | None = None
    log_predictions: bool = True


class StudyConfig(Strict):
    # null: a SQLite file under the cache directory; or any SQLAlchemy URL (postgresql://...).
    storage: str | None = None
    heartbeat_interval: Annotated[int, Field(gt=0)] = 10
    grace_period: Annotated[int, Field(gt=0)] = 30
    max_retry: Annotated[int, Field(ge=0)] = 2
    # Local worker processes `sweep` runs (this one included); `--workers N` overrides. Not part
    # of any trial key: how many processes run a plan does not change its trials.
    workers: Annotated[int, Field(gt=0)] = 1


def non_empty_unique(value: list[Any]) -> list[Any]:
    if not value:
        raise ValueError("must list at least one value")
    if len(set(value)) != len(value):
        raise ValueError("lists a value twice")
    return value


class SeedsConfig(Strict):
    """`seeds: [0, 1, 2]` or `seeds: {values: [0, 1, 2], vary_split: true}`. A seed changes the
    adapter's initialisation and the order of training rows; with `vary_split` it also changes
    the QR checker's fold split. The evaluation rows never change with the seed, so every seed
    is scored on the same rows (what paired comparisons need)."""

    values: list[int] = [0]
    vary_split: bool = False

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not value:
                raise ValueError("must list at least one value")
            return {"values": value}
        return value

    _non_empty_unique = field_validator("values")(classmethod(lambda cls, v: non_empty_unique(v)))

    def __iter__(self):  # noqa: ANN204 - iterate the seed values, as the list form reads
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, index: int) -> int:
        return self.values[index]


class SweepConfig(Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")] = "ablation"
    data: DataConfig = DataConfig()
    tasks: list[Task] = ["QC", "QI"]
    model: ModelConfig = ModelConfig()
    lora: LoraConfig = LoraConfig()
    training: TrainingConfig = TrainingConfig()
    scoring: ScoringConfig = ScoringConfig()
    components: ComponentsConfig = ComponentsConfig()
    design: DesignConfig = DesignConfig()
    seeds: SeedsConfig = SeedsConfig()
    tracking: TrackingConfig = TrackingConfig()
    study: StudyConfig = StudyConfig()
    cache_dir: Path = Path(".harness/cache")
    reports_dir: Path = Path("reports")

    _non_empty_unique = field_validator("tasks")(classmethod(lambda cls, v: non_empty_unique(v)))

    @model_validator(mode="after")
    def _components_apply(self) -> SweepConfig:
        for where, names in (("design.switches", self.design.switches),
                             ("design.always_on", self.design.always_on)):
            for name in names:
                tasks = REGISTRY[name].tasks
                if not set(tasks) & set(self.tasks):
                    raise ValueError(
                        f"{where}: {name} applies to {'/'.join(tasks)} only, "
                        f"and tasks are {self.tasks}")
        design = self.design
        searchable = [c.name for c in REGISTRY if c.search_space(["en"])]
        if (design.kind == "optuna" and design.optuna.search_qr_thresholds
                and not set(searchable) & set(design.always_on)):
            raise ValueError("design.optuna.search_qr_thresholds needs "
                             f"{' or '.join(searchable)} in design.always_on")
        if design.kind == "optuna" and not design.optuna.search_qr_thresholds and not design.optuna.params:
            raise ValueError("design.optuna: nothing to search (no QR thresholds, no params)")
        for path in design.optuna.params:
            try:
                leaf = setting_type(type(self), path)
            except ConfigError as error:
                raise ValueError(f"design.optuna.params: {error}") from None
            if not _numeric(leaf):
                raise ValueError(f"design.optuna.params: {path} is not a numeric setting")
        return self


# ------------------------------------------------------------------- overrides
# A search or a design changes settings by their path in this schema, e.g. `lora.r`,
# `training.learning_rate` or `components.QR.thresholds.en.hi_cos`; one function applies them.


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _dict_value_in(annotation: Any) -> Any:
    if typing.get_origin(annotation) is dict:
        return typing.get_args(annotation)[1]
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is dict:
            return typing.get_args(arg)[1]
    return None


def _numeric(annotation: Any) -> bool:
    if annotation in (int, float):
        return True
    return any(_numeric(arg) for arg in typing.get_args(annotation)
               if not isinstance(arg, type) or arg in (int, float))


def setting_type(model: type[BaseModel], path: str) -> Any:
    """The type of the setting at `path`; ConfigError naming the path when there is none."""
    annotation: Any = model
    for part in path.split("."):
        section = _model_in(annotation)
        values = _dict_value_in(annotation)
        if section is not None and part in section.model_fields:
            annotation = section.model_fields[part].annotation
        elif values is not None and part:
            annotation = values
        else:
            raise ConfigError(f"unknown setting path {path!r} (paths are spelled as in the YAML, "
                              "e.g. lora.r, training.learning_rate, "
                              "components.QR.thresholds.en.hi_cos)")
    if _model_in(annotation) is not None and _dict_value_in(annotation) is None:
        raise ConfigError(f"{path!r} is a section, not a setting")
    return annotation


def apply_overrides(config: SweepConfig, overrides: Mapping[str, Any]) -> SweepConfig:
    """`config` with each `path: value` set, validated again; errors name the path."""
    if not overrides:
        return config
    raw = config.model_dump(mode="json")
    for path, value in overrides.items():
        setting_type(type(config), path)
        *parents, leaf = path.split(".")
        node = raw
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}  # e.g. thresholds "auto" -> per-language values
            node = node[part]
        node[leaf] = value
    try:
        return type(config).model_validate(raw)
    except ValidationError as error:
        paths = ", ".join(sorted(overrides))
        raise ConfigError(f"overrides ({paths}): {_format_error(error)}") from None


def sweep_model() -> type[SweepConfig]:
    """The schema with every registered component (rebuilt when the registry changes)."""
    return _sweep_model(REGISTRY.revision)


@cache
def _sweep_model(revision: int) -> type[SweepConfig]:
    components = components_model()
    if components is ComponentsConfig:
        return SweepConfig
    return create_model("SweepConfig", __base__=SweepConfig,
                        components=(components, components()))


# ------------------------------------------------------------------------ loading


def _is_branch(part: object) -> bool:
    """Union members and validator wrappers in an error path (`literal['auto']`, `dict[...]`)."""
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


def _format_error(error: ValidationError) -> str:
    # In a union the deepest error is the informative one ("en.hi_jac: Field required"), not
    # "Input should be 'auto'".
    first = max(error.errors(), key=lambda e: len([p for p in e["loc"] if not _is_branch(p)]))
    path = ".".join(str(p) for p in first["loc"] if not _is_branch(p))
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "literal_error":
        message = f"{message} (got {first.get('input')!r})"
    prefix = f"{path}: " if path else ""
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{prefix}{message}{more}"


def parse_config(raw: dict[str, Any], *, source: str = "config") -> SweepConfig:
    """Validate a parsed YAML mapping; raises ConfigError naming the key path."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys to values")
    try:
        return sweep_model().model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"{source}: {_format_error(error)}") from None


def load_config(path: Path | str) -> SweepConfig:
    """Read and validate a sweep YAML file. Relative data paths resolve against its folder."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} invalid YAML: {getattr(error, 'problem', error)}") from None
    config = parse_config(raw, source=str(path))
    if config.data.dir is not None and not config.data.dir.is_absolute():
        data = config.data.model_copy(update={"dir": (path.parent / config.data.dir)})
        config = config.model_copy(update={"data": data})
    return config


def with_data_dir(config: SweepConfig, directory: Path) -> SweepConfig:
    """The same sweep on the competition-format files in `directory` (`--data DIR`)."""
    data = config.data.model_copy(update={"source": "dir", "dir": Path(directory)})
    return config.model_copy(update={"data": data})


__all__ = [
    "LANGUAGES", "TASKS", "SweepConfig", "applicable_components", "sweep_model",
    "load_config", "parse_config", "with_data_dir",
]

"""What a pipeline component is, and the registry that lists them in pipeline order.

A component declares, in its own module:

* `name`, `tasks` it applies to, `stage` it acts on and `order` (its place in the pipeline);
* `settings`, the pydantic model of its YAML section `components.<name>`;
* `version`, bumped when its output for the same inputs changes (part of every cache key);
* for text stages, `reads` (the columns whose content enters its cache key) and `combine`
  (`replace` the stage's text, or `append` to it);
* `apply(...)`, the one function that does its work, and optionally `key_settings` (the
  settings that change its output), `inputs` (fingerprints of data it reads besides the rows),
  `markers` (strings the built-in tokenizer must know) and `report_sections`.

Stages, in pipeline order:
  rows    (training rows in, kept training rows out)         e.g. QR
  query   (query text in, query text out)                    e.g. TR, LT
  target  (category path / item title text in, text out)     e.g. HCT, SIT, DG
  prompt  (a PromptParts in, a PromptParts out)              e.g. ICL, CoT

Text components compose: each reads the `query_text` / `target_text` its predecessors wrote.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict

Stage = Literal["rows", "query", "target", "prompt"]
STAGES: tuple[Stage, ...] = ("rows", "query", "target", "prompt")
TEXT_COLUMN = {"query": "query_text", "target": "target_text"}


class Strict(BaseModel):
    """Base of every settings model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoSettings(Strict):
    """For components without settings."""


@dataclass
class Context:
    """What a component may read besides its rows: the trial's resolved config, the task,
    the sweep's data and cache, and (for QR) a checker factory. Built by the pipeline."""

    config: Any  # SweepConfig (not imported here: the schema is built from this registry)
    task: str
    cache: Any = None  # harness.cache.StageCache
    data: Any = None  # harness.data.prepare.PreparedData
    seed: int = 0
    checker: Any = None  # (train_rows, predict_rows) -> p_yes, for QR's model signal
    trial: Any = None  # harness.plan.TrialSpec
    truth: pd.DataFrame | None = None  # noise ground truth of the training rows, when known
    progress: bool = False

    def settings(self, name: str) -> BaseModel:
        return getattr(self.config.components, name)


@dataclass
class PromptParts:
    """What the prompt stage components shape: the instruction texts and the ICL examples."""

    rows: pd.DataFrame
    pool: pd.DataFrame | None
    same_rows: bool
    cot_version: str | None = None
    examples: list | None = None
    # Only the instruction texts are wanted (for logging): no examples are selected.
    texts_only: bool = False


class Component:
    """Base class of a pipeline component (see the module docstring)."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    tasks: ClassVar[tuple[str, ...]] = ("QC", "QI")
    stage: ClassVar[Stage]
    order: ClassVar[int]
    version: ClassVar[str] = "1"
    settings: ClassVar[type[BaseModel]] = NoSettings
    reads: ClassVar[tuple[str, ...]] = ()
    combine: ClassVar[Literal["replace", "append"]] = "replace"

    def applies_to(self, task: str) -> bool:
        return task in self.tasks

    def reads_for(self, task: str) -> list[str]:
        """Columns whose content enters the cache key; `target` means the task's target field."""
        from harness.data import target_column

        return [target_column(task) if c == "target" else c for c in self.reads]

    def key_settings(self, settings: BaseModel, context: Context) -> dict[str, Any]:
        """The settings that can change this component's output (and so a trial's numbers)."""
        return settings.model_dump(mode="json")

    def inputs(self, settings: BaseModel, context: Context) -> list[str]:
        """Fingerprints of data this component reads besides its rows (e.g. SIT: QC train)."""
        return []

    def input_fingerprints(self, settings: BaseModel, *, task: str,
                           fingerprints: Mapping[str, str]) -> dict[str, str]:
        """Like `inputs` but from file fingerprints alone, for trial keys (no data loaded)."""
        return {}

    def markers(self) -> list[str]:
        """Strings the built-in tokenizer should learn as whole tokens."""
        return []

    def search_space(self, languages: list[str]) -> dict[str, tuple[float, float]]:
        """Per-language knobs an Optuna design searches (`design.optuna.search_qr_thresholds`),
        as schema paths -> (low, high); none by default."""
        return {}

    def model_fits(self, settings: BaseModel) -> int:
        """Extra model fine-tunes this component runs per trial (for the dry run's estimate)."""
        return 0

    def apply(self, data: Any, settings: BaseModel, context: Context) -> Any:
        """rows: DataFrame -> RowsResult; query/target: DataFrame -> Series; prompt: PromptParts."""
        raise NotImplementedError

    def report_sections(self, records: list, plan: Any) -> list[tuple[str, str]]:
        """Extra (title, markdown) sections this component adds to the report."""
        return []


@dataclass
class RowsResult:
    """Output of a rows-stage component: the rows kept, metrics, and tables to log."""

    kept: pd.DataFrame
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, pd.DataFrame | str] = field(default_factory=dict)


class Registry:
    """The components, in pipeline order (stage first, then `order`)."""

    def __init__(self, components: Iterable[Component] = ()) -> None:
        self._components: dict[str, Component] = {}
        self.revision = 0
        for component in components:
            self.register(component)

    def register(self, component: Component) -> Component:
        if component.name in self._components:
            raise ValueError(f"component {component.name!r} is registered twice")
        if component.stage not in STAGES:
            raise ValueError(f"component {component.name!r}: unknown stage {component.stage!r}")
        self._components[component.name] = component
        self.revision += 1
        return component

    def unregister(self, name: str) -> None:
        del self._components[name]
        self.revision += 1

    def __iter__(self) -> Iterator[Component]:
        return iter(sorted(self._components.values(),
                           key=lambda c: (STAGES.index(c.stage), c.order)))

    def __contains__(self, name: object) -> bool:
        return name in self._components

    def __getitem__(self, name: str) -> Component:
        return self._components[name]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self)

    def for_task(self, task: str) -> tuple[str, ...]:
        return tuple(c.name for c in self if c.applies_to(task))

    def ordered(self, names: Iterable[str]) -> tuple[str, ...]:
        chosen = set(names)
        return tuple(n for n in self.names if n in chosen)

    def label(self, names: Iterable[str]) -> str:
        """`"QR+LT+HCT"` in pipeline order, `"baseline"` for none."""
        return "+".join(self.ordered(names)) or "baseline"

    def of_stage(self, stage: Stage, names: Iterable[str]) -> list[Component]:
        chosen = set(names)
        return [c for c in self if c.stage == stage and c.name in chosen]

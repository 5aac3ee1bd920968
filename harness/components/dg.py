"""DG, Description Generation: `[GEN_TAGS] ... [GEN_DESC] ...` written from the item title and
its attributes, by an offline generator or any causal LM (see `describe.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
from pydantic import Field, model_validator

from harness.components.base import Component, Context, Strict
from harness.components.describe import (
    DescriptionGenerator,
    generate_descriptions,
    make_describer,
)
from harness.components.sit import vocabulary
from harness.components.tagging import extract_attributes


class DGConfig(Strict):
    generator: Literal["offline", "llm"] = "offline"
    model: str | None = None
    max_new_tokens: Annotated[int, Field(gt=0)] = 64
    batch_size: Annotated[int, Field(gt=0)] = 8
    # Attribute vocabulary the generator starts from (YAML, as components.SIT.vocab); null: built-in.
    vocab: Path | None = None

    @model_validator(mode="after")
    def _model_for_llm(self) -> DGConfig:
        if self.generator == "llm" and not self.model:
            raise ValueError("components.DG.model is required when generator is 'llm'")
        return self


class DescriptionGeneration(Component):
    name = "DG"
    description = "Description Generation: generated tags and an English description"
    tasks = ("QI",)
    stage = "target"
    order = 30
    settings = DGConfig
    reads = ("item_title",)
    combine = "append"

    def __init__(self) -> None:
        self._generators: dict[tuple, DescriptionGenerator] = {}

    def generator(self, settings: DGConfig, model: Any) -> DescriptionGenerator:
        """One generator per (settings, device, dtype): an LLM is loaded once per process."""
        key = (settings, model.device, model.dtype, model.trust_remote_code)
        if key not in self._generators:
            self._generators[key] = make_describer(settings, device=model.device,
                                                   dtype=model.dtype,
                                                   trust_remote_code=model.trust_remote_code)
        return self._generators[key]

    def key_settings(self, settings: DGConfig, context: Context) -> dict[str, Any]:
        generator = self.generator(settings, context.config.model)
        key = {**settings.model_dump(mode="json"), "generator": generator.name,
               "generator_version": generator.version, "vocab": vocabulary(settings.vocab).digest}
        if settings.generator == "llm":
            key["dtype"] = context.config.model.dtype  # bfloat16 and float32 generate differently
        return key

    def apply(self, frame: pd.DataFrame, settings: DGConfig, context: Context) -> pd.Series:
        titles = frame["item_title"]
        attributes = extract_attributes(titles, vocab=vocabulary(settings.vocab))
        generated = generate_descriptions(list(titles), attributes,
                                          generator=self.generator(settings, context.config.model))
        return pd.Series(generated, index=frame.index)

    def markers(self) -> list[str]:
        # Appended after the title, so learned as they appear mid-text (after a space).
        return [" [GEN_TAGS] [GEN_DESC]"]

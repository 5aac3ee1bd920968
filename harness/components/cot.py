"""CoT, Chain-of-Thought cues: the instruction spells out the relevance criteria step by step
(versioned texts `texts/cot_<task>_<version>.txt`); the answer stays one word."""

from __future__ import annotations

from typing import Any

from harness.components.base import Component, Context, PromptParts, Strict
from harness.components.prompts import TEXTS_DIR, prompt_texts, stable_texts_digest
from harness.data import TASKS


class CoTConfig(Strict):
    version: str = "v1"


class ChainOfThought(Component):
    name = "CoT"
    description = "Chain-of-Thought cues in the instruction"
    stage = "prompt"
    order = 20
    settings = CoTConfig

    def key_settings(self, settings: CoTConfig, context: Context) -> dict[str, Any]:
        # The texts themselves, so an edited cue file is a new trial.
        return {"version": settings.version,
                "texts": stable_texts_digest(context.task, cot_version=settings.version)}

    def apply(self, parts: PromptParts, settings: CoTConfig, context: Context) -> PromptParts:
        parts.cot_version = settings.version
        return parts

    def markers(self) -> list[str]:
        # The full instruction as it reads with each shipped version of the cues.
        versions = sorted({p.stem.rsplit("_", 1)[1] for p in TEXTS_DIR.glob("cot_*_*.txt")})
        return [text for task in TASKS for version in versions
                for text in prompt_texts(task, cot_version=version).values()]

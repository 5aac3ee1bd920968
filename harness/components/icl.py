"""ICL, In-Context Learning: k labelled training examples (at least one "yes" and one "no") in
the prompt's options block, fixed as in the reference or the most similar training rows."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from harness.cache import frame_fingerprint
from harness.components.base import Component, Context, PromptParts, Strict
from harness.components.prompts import Example, select_examples


class ICLConfig(Strict):
    k: Annotated[int, Field(ge=2, le=16)] = 2
    strategy: Literal["fixed", "similar"] = "fixed"
    seed: int = 0


class InContextLearning(Component):
    name = "ICL"
    description = "In-Context Learning: labelled examples in the prompt"
    stage = "prompt"
    order = 10
    settings = ICLConfig

    def apply(self, parts: PromptParts, settings: ICLConfig, context: Context) -> PromptParts:
        if parts.texts_only:
            return parts
        if parts.pool is None:
            raise ValueError("ICL needs the training pool")
        rows, pool = parts.rows, parts.pool
        columns = ["id", "query_text", "target_text"]
        indices = context.cache.get_or_compute(
            "ICL", version=self.version,
            params={**settings.model_dump(mode="json"), "same_rows": parts.same_rows},
            inputs=[frame_fingerprint(rows, [*columns, "language"]),
                    frame_fingerprint(pool, [*columns, "language", "label"])],
            compute=lambda: _pad(select_examples(
                rows, pool, k=settings.k, strategy=settings.strategy, seed=settings.seed,
                exclude_same_id=parts.same_rows), settings.k),
            kind="array")
        queries = pool["query_text"].to_numpy()
        targets = pool["target_text"].to_numpy()
        labels = pool["label"].to_numpy(dtype=int)
        parts.examples = [[Example(queries[j], targets[j], int(labels[j])) for j in row if j >= 0]
                          for row in indices]
        return parts


def _pad(indices: list[list[int]], k: int) -> np.ndarray:
    out = np.full((len(indices), k), -1, dtype=np.int64)
    for i, row in enumerate(indices):
        out[i, :len(row)] = row[:k]
    return out

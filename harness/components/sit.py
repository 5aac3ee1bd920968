"""SIT, Semantic Item Tagging: `[ATTR] brand: x, color: y, ..., category: leaf` after the title.

Attributes come from the item title through a YAML vocabulary; `category` is the QC leaf of the
same query when the data directory has QC training rows (whatever tasks the sweep runs, so a
trial's text never depends on its neighbours).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from harness.cache import frame_fingerprint
from harness.components.base import Component, Context, Strict
from harness.components.tagging import (
    AttributeVocab,
    attribute_tags,
    load_attribute_vocab,
    qc_leaf_lookup,
)


class SITConfig(Strict):
    # YAML file with attribute vocabularies; null uses the built-in one.
    vocab: Path | None = None
    # Append the QC leaf category when the same query occurs in the QC training data.
    qc_leaf: bool = True


@cache
def vocabulary(path: Path | None) -> AttributeVocab:
    return load_attribute_vocab(path)


QC_LEAF_TASK = "QC"


def qc_train(context: Context) -> pd.DataFrame | None:
    """The QC training rows of the sweep's data directory, if it has them."""
    data = context.data
    return None if data is None else data.other_train(QC_LEAF_TASK)


class SemanticItemTagging(Component):
    name = "SIT"
    description = "Semantic Item Tagging: title attributes and the query's QC leaf category"
    tasks = ("QI",)
    stage = "target"
    order = 20
    settings = SITConfig
    reads = ("origin_query", "item_title")
    combine = "append"

    def key_settings(self, settings: SITConfig, context: Context | None = None) -> dict[str, Any]:
        # The vocabulary's content, not its path, decides the tags.
        return {"vocab": vocabulary(settings.vocab).digest, "qc_leaf": settings.qc_leaf}

    def inputs(self, settings: SITConfig, context: Context) -> list[str]:
        leaves = qc_train(context) if settings.qc_leaf else None
        if leaves is None:
            return ["no-qc-leaf"]
        return [frame_fingerprint(leaves, ["origin_query", "category_path", "label"])]

    def input_fingerprints(self, settings: SITConfig, *, task: str,
                           fingerprints: dict[str, str]) -> dict[str, str]:
        if settings.qc_leaf and QC_LEAF_TASK in fingerprints:
            return {"qc_leaf_data": fingerprints[QC_LEAF_TASK]}
        return {}

    def apply(self, frame: pd.DataFrame, settings: SITConfig, context: Context) -> pd.Series:
        leaves_from = qc_train(context) if settings.qc_leaf else None
        leaves = qc_leaf_lookup(leaves_from) if leaves_from is not None else None
        return attribute_tags(frame, vocab=vocabulary(settings.vocab), qc_leaf=leaves)

    def markers(self) -> list[str]:
        return ["[ATTR] brand: color: size: material: product_type: style: category:"]

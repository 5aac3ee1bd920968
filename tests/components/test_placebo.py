"""PLACEBO carries no information: the same words after every query, in every task."""

from __future__ import annotations

import pandas as pd

from harness.cache import StageCache
from harness.components import REGISTRY
from harness.config import parse_config
from harness.plan import resolve_trial
from harness.stages import Stages


def test_placebo_appends_the_same_words_to_every_query_after_lt(tmp_path):
    config = parse_config({"components": {"PLACEBO": {"text": "(note)"}}})
    spec = resolve_trial(config, task="QI", components=("PLACEBO", "LT"), seed=0, model="tiny",
                         fingerprints={"QC": "a", "QI": "b"})
    rows = pd.DataFrame({"id": ["1", "2"], "language": ["en", "ja"], "task": "QI",
                         "origin_query": ["red shoes", "赤い靴"], "item_title": ["x", "y"]})
    texts = Stages(config=spec.config, cache=StageCache(tmp_path), data=None).text_columns(rows, spec)
    assert texts["query_text"].tolist() == ["[LANG=en] red shoes (note)", "[LANG=ja] 赤い靴 (note)"]
    assert texts["target_text"].tolist() == ["x", "y"]


def test_placebo_is_a_switch_for_every_task_and_design():
    assert REGISTRY["PLACEBO"].applies_to("QC") and REGISTRY["PLACEBO"].applies_to("QI")
    config = parse_config({"design": {"kind": "grid", "switches": ["PLACEBO", "HCT"]}})
    assert config.design.switches == ["PLACEBO", "HCT"]
    assert REGISTRY.ordered(["PLACEBO", "TR", "LT"]) == ("TR", "LT", "PLACEBO")

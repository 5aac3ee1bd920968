"""Every switch changes what the model sees; stages are cached and shared between trials."""

from __future__ import annotations

import numpy as np
import pytest

from harness.cache import StageCache
from harness.config import parse_config
from harness.data.loader import load_directory
from harness.data.synth import generate
from harness.stages import Stages


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("stages")
    generate(root / "data", seed=0, scale="tiny")
    config = parse_config({"data": {"source": "dir", "dir": str(root / "data")},
                           "components": {"ICL": {"k": 2, "strategy": "similar"}}})
    data = load_directory(root / "data", tasks=["QC", "QI"])
    stages = Stages(config=config, cache=StageCache(root / "cache"), qc_train=data["QC"].train.frame)
    return stages, data


def prompts_for(stages, data, task, components):
    sets = stages.evaluation_sets(data[task])
    train = stages.text_columns(sets.train, task=task, components=components)
    rows = stages.text_columns(sets.evaluation, task=task, components=components)
    return stages.prompts(rows, task=task, components=components, pool=train)


@pytest.mark.parametrize(("task", "component", "marker"), [
    ("QC", "LT", "Query: [LANG="),
    ("QC", "HCT", "[D1] "),
    ("QI", "LT", "Query: [LANG="),
    ("QI", "SIT", "[ATTR] "),
    ("QI", "DG", "[GEN_TAGS] "),
    ("QC", "ICL", "### Options:"),
    ("QI", "ICL", "### Options:"),
])
def test_each_switch_changes_the_prompt(setup, task, component, marker):
    stages, data = setup
    off = prompts_for(stages, data, task, ())
    on = prompts_for(stages, data, task, (component,))
    assert len(on) == len(off)
    assert not any(marker in p for p in off)
    assert sum(marker in p for p in on) >= 0.5 * len(on)
    assert all(p.endswith("### Response:\n") for p in on)


def test_cot_changes_the_instruction_only(setup):
    stages, data = setup
    off = prompts_for(stages, data, "QC", ())
    on = prompts_for(stages, data, "QC", ("CoT",))
    assert all(len(a) > len(b) for a, b in zip(on, off, strict=True))
    assert all(a.split("### Input:")[-1] == b.split("### Input:")[-1] for a, b in zip(on, off, strict=True))


def test_qr_only_removes_training_rows(setup):
    stages, data = setup
    sets = stages.evaluation_sets(data["QC"])
    rng = np.random.default_rng(0)

    def checker(train_rows, predict_rows):  # a stand-in checker: noisy copy of the labels
        labels = predict_rows["label"].to_numpy(dtype=float)
        return np.clip(np.where(rng.random(len(labels)) < 0.1, 1 - labels, labels), 0.02, 0.98)

    result = stages.quality_refinement(sets.train, task="QC", checker=checker,
                                       checker_identity={"test": 1}, seed=0)
    assert 0 < len(result.kept) < len(sets.train)
    assert set(result.kept["id"]) <= set(sets.train["id"])
    assert len(result.audit) == len(sets.train)
    # the evaluation rows are untouched by construction: QR never sees them
    assert stages.evaluation_sets(data["QC"]).evaluation.equals(sets.evaluation)


def test_text_stages_run_once_per_input(setup, tmp_path):
    _, data = setup
    config = parse_config({})
    stages = Stages(config=config, cache=StageCache(tmp_path / "c"), qc_train=data["QC"].train.frame)
    for components in [("LT",), ("HCT",), ("LT", "HCT"), ("LT", "HCT")]:
        prompts_for(stages, data, "QC", components)
    counts = stages.cache.counts()
    # train and test frames: each stage computed once per frame, then reused
    assert counts["LT"] == {"misses": 2, "hits": 4}
    assert counts["HCT"] == {"misses": 2, "hits": 4}

"""Every switch changes what the model sees; stages are cached and shared between trials."""

from __future__ import annotations

import numpy as np
import pytest

from harness.cache import StageCache
from harness.config import parse_config
from harness.data.loader import load_directory
from harness.data.prepare import PreparedData
from harness.data.synth import generate
from harness.plan import resolve_trial
from harness.stages import Stages


def loaded(root):
    return PreparedData(root, "dir", {}, load_directory(root, tasks=["QC", "QI"]))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("stages")
    generate(root / "data", seed=0, scale="tiny")
    config = parse_config({"data": {"source": "dir", "dir": str(root / "data")},
                           "components": {"ICL": {"k": 2, "strategy": "similar"}}})
    data = loaded(root / "data")
    return Stages(config=config, cache=StageCache(root / "cache"), data=data), data


def spec_for(config, task, components):
    return resolve_trial(config, task=task, components=components, seed=0, model="tiny",
                         fingerprints={"QC": "qc", "QI": "qi"})


def prompts_for(stages, data, task, components):
    spec = spec_for(stages.config, task, components)
    sets = stages.evaluation_sets(data.tasks[task])
    train = stages.text_columns(sets.train, spec)
    rows = stages.text_columns(sets.evaluation, spec)
    return stages.prompts(rows, spec, pool=train)


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
    sets = stages.evaluation_sets(data.tasks["QC"])
    rng = np.random.default_rng(0)

    def checker(train_rows, predict_rows):  # a stand-in checker: noisy copy of the labels
        labels = predict_rows["label"].to_numpy(dtype=float)
        return np.clip(np.where(rng.random(len(labels)) < 0.1, 1 - labels, labels), 0.02, 0.98)

    kept, results = stages.refine(sets.train, spec_for(stages.config, "QC", ("QR",)),
                                  checker=checker)
    assert 0 < len(kept) < len(sets.train)
    assert set(kept["id"]) <= set(sets.train["id"])
    assert len(results[0].artifacts["qr/audit.csv"]) == len(sets.train)
    # the evaluation rows are untouched by construction: QR never sees them
    assert stages.evaluation_sets(data.tasks["QC"]).evaluation.equals(sets.evaluation)


def test_text_stages_run_once_per_input(setup, tmp_path):
    _, data = setup
    config = parse_config({})
    stages = Stages(config=config, cache=StageCache(tmp_path / "c"), data=data)
    for components in [("LT",), ("HCT",), ("LT", "HCT"), ("LT", "HCT")]:
        prompts_for(stages, data, "QC", components)
    counts = stages.cache.counts()
    # train and test frames: each stage computed once per frame, then reused
    assert counts["LT"] == {"misses": 2, "hits": 4}
    assert counts["HCT"] == {"misses": 2, "hits": 4}

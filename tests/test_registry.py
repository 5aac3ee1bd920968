"""A component is one registered class: registering a new one is all it takes to see it in the
schema, the plan, the trial's MLflow params, the `tag` command and the report."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from harness.cli import main
from harness.components import REGISTRY
from harness.components.base import Component, Context, Registry, Strict
from harness.config import parse_config
from harness.data.synth import generate
from harness.errors import ConfigError
from harness.plan import build_plan
from harness.sweep import run_sweep
from tests.sweep_helpers import child_runs, tiny_config


class ShoutConfig(Strict):
    suffix: str = "!"


class Shout(Component):
    """A throwaway text component: the query in capitals with a suffix."""

    name = "SHOUT"
    description = "Shout: the query in capitals"
    tasks = ("QC",)
    stage = "query"
    order = 90
    settings = ShoutConfig
    reads = ("query_text",)

    def apply(self, frame: pd.DataFrame, settings: ShoutConfig, context: Context) -> pd.Series:
        return frame["query_text"].str.upper() + settings.suffix


@pytest.fixture
def shout():
    component = REGISTRY.register(Shout())
    try:
        yield component
    finally:
        REGISTRY.unregister("SHOUT")


def test_registry_keeps_pipeline_order_and_rejects_duplicates(shout):
    names = REGISTRY.names  # by stage (rows, query, target, prompt), then order
    assert names.index("LT") < names.index("SHOUT") < names.index("HCT")
    assert REGISTRY.ordered(["SHOUT", "LT"]) == ("LT", "SHOUT")
    assert "SHOUT" in REGISTRY.for_task("QC") and "SHOUT" not in REGISTRY.for_task("QI")
    with pytest.raises(ValueError, match="SHOUT"):
        REGISTRY.register(Shout())
    assert Registry([Shout()]).names == ("SHOUT",)


def test_schema_and_plan_take_the_component_from_the_registry(shout):
    config = parse_config({"components": {"SHOUT": {"suffix": "?!"}},
                           "design": {"kind": "grid", "switches": ["SHOUT", "LT"]}})
    assert config.components.SHOUT.suffix == "?!"
    with pytest.raises(ConfigError, match="components.SHOUT.volume"):
        parse_config({"components": {"SHOUT": {"volume": 11}}})
    plan = build_plan(config, data_fingerprints={"QC": "a", "QI": "b"})
    labels = {(t.task, t.label) for t in plan.trials}
    assert ("QC", "LT+SHOUT") in labels and ("QI", "LT") in labels
    assert not any("SHOUT" in t.components for t in plan.trials if t.task == "QI")
    spec = next(t for t in plan.trials if t.components == ("SHOUT",))
    assert spec.params()["SHOUT"] is True
    assert spec.params()["components.SHOUT.suffix"] == "?!"


def test_unregistered_component_is_unknown_again():
    with pytest.raises(ConfigError, match="SHOUT"):
        parse_config({"design": {"kind": "grid", "switches": ["SHOUT"]}})


def test_tag_command_has_a_flag_for_it(shout, tmp_path):
    generate(tmp_path / "data", seed=0, scale="tiny")
    out = tmp_path / "tagged.txt"
    assert main(["tag", "--task", "QC", "--lt", "--shout", "--set", "components.SHOUT.suffix=??",
                 "--input", str(tmp_path / "data" / "train_QC.txt"), "--output", str(out)]) == 0
    row = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert row["tagged_query"] == f"[LANG={row['language']}] {row['origin_query']}".upper() + "??"


def test_sweep_logs_and_reports_it(shout, tmp_path):
    config = tiny_config(tmp_path, tasks=["QC"], design={"kind": "grid", "switches": ["SHOUT"]},
                         training={"epochs": 1, "learning_rate": 3e-3, "batch_size": 16,
                                   "max_length": 256})
    summary = run_sweep(config, progress=False)
    assert summary.failed == [] and summary.finished == 2
    runs = child_runs(tmp_path)
    assert sorted(runs["params.SHOUT"]) == ["False", "True"]
    assert (runs.loc[runs["params.SHOUT"] == "True", "params.components.SHOUT.suffix"] == "!").all()
    report = (tmp_path / "reports" / "e2e" / "ablation.md").read_text(encoding="utf-8")
    assert "| SHOUT " in report and "–" not in report.split("| SHOUT ")[1].split("\n")[0]

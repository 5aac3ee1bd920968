from pathlib import Path

import pytest

from harness.config import load_config, parse_config, with_data_dir
from harness.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def error_of(raw: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, source="sweep.yaml")
    return str(caught.value)


def test_defaults_are_valid():
    config = parse_config({})
    assert config.tasks == ["QC", "QI"] and config.model.name == "tiny"


@pytest.mark.parametrize(("raw", "expected"), [
    ({"trainng": {}}, "sweep.yaml: trainng: unknown key"),
    ({"training": {"learning_rate": 0}}, "training.learning_rate: Input should be greater than 0"),
    ({"training": {"epochs": "two"}}, "training.epochs: Input should be a valid number"),
    ({"design": {"switches": ["QR", "XYZ"]}}, "design.switches: unknown component 'XYZ'"),
    ({"design": {"switches": ["LT", "LT"]}}, "design.switches: component listed twice: LT"),
    ({"tasks": ["QI"], "design": {"switches": ["HCT"]}}, "HCT applies to QC only"),
    ({"tasks": ["QC"], "design": {"always_on": ["SIT"]}}, "SIT applies to QI only"),
    ({"data": {"source": "dir"}}, "data.dir is required"),
    ({"data": {"eval": {"holdout_fraction": 1.5}}}, "data.eval.holdout_fraction: Input should be less than 1"),
    ({"lora": {"r": -4}}, "lora.r: Input should be greater than 0"),
    ({"seeds": []}, "seeds: must list at least one value"),
    ({"components": {"DG": {"generator": "llm"}}}, "components.DG.model is required"),
    ({"design": {"kind": "optuna", "switches": ["LT"]}}, "needs QR in design.always_on"),
])
def test_errors_name_the_key_path(raw, expected):
    assert expected in error_of(raw)


def test_load_config_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  batch_size: [1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    assert "invalid YAML" in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")


def test_shipped_sweep_files_validate():
    for path in [ROOT / "ablations.yaml", *sorted((ROOT / "experiments").glob("*.yaml"))]:
        load_config(path)


def test_data_dir_override_and_relative_paths(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("data:\n  source: dir\n  dir: comp\n")
    config = load_config(path)
    assert config.data.dir == tmp_path / "comp"
    moved = with_data_dir(config, Path("/data/real"))
    assert moved.data.source == "dir" and moved.data.dir == Path("/data/real")

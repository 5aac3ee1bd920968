"""The resolved trial: overrides in the schema's spelling, a key that changes exactly when the
trial's numbers can, and MLflow params that show the values the trial trained with."""

from __future__ import annotations

import pytest

from harness.config import parse_config
from harness.errors import ConfigError
from harness.plan import build_plan, resolve_trial

FINGERPRINTS = {"QC": "qc-data-1", "QI": "qi-data-1"}


def trial(raw: dict | None = None, *, task: str = "QC", components: tuple[str, ...] = (),
          fingerprints: dict | None = None, overrides: dict | None = None, **kwargs):
    config = parse_config(raw or {})
    return resolve_trial(config, task=task, components=components, seed=0,
                         model=config.model.name, fingerprints=fingerprints or FINGERPRINTS,
                         overrides=overrides, **kwargs)


def test_params_show_the_values_trained_with():
    spec = trial(components=("QR",), overrides={
        "lora.r": 4, "training.learning_rate": 0.01,
        **{f"components.QR.thresholds.en.{name}": 0.25
           for name in ("hi_cos", "hi_jac", "lo_cos", "lo_jac")}})
    assert spec.config.lora.r == 4 and spec.config.training.learning_rate == 0.01
    params = spec.params()
    assert params["lora.r"] == 4
    assert params["training.learning_rate"] == 0.01
    assert params["components.QR.thresholds.en.hi_cos"] == 0.25
    assert params["QR"] is True and params["LT"] is False
    assert params["components"] == "QR"


@pytest.mark.parametrize("path", ["qr.en.hi_cos", "en.hi_cos", "qr.thresholds.en.hi_cos",
                                  "lora.rank", "components.XX.mode"])
def test_override_spellings_other_than_the_schema_path_are_errors(path):
    with pytest.raises(ConfigError) as error:
        trial(overrides={path: 0.3})
    assert path.split(".")[0] in str(error.value)
    assert "\n" not in str(error.value)


def test_partial_threshold_override_names_the_missing_field():
    with pytest.raises(ConfigError, match=r"components\.QR\.thresholds\.en\.hi_jac: Field required"):
        trial(components=("QR",), overrides={"components.QR.thresholds.en.hi_cos": 0.3,
                                             "components.QR.thresholds.en.lo_cos": 0.1,
                                             "components.QR.thresholds.en.lo_jac": 0.1})


@pytest.mark.parametrize("raw", [
    {"scoring": {"batch_size": 7}},
    {"scoring": {"predict_unlabelled": False}},
    {"tracking": {"uri": "sqlite:///elsewhere.db"}},
    {"study": {"storage": "sqlite:///elsewhere.db"}},
    {"design": {"kind": "grid", "switches": ["HCT"]}},
    {"seeds": [0, 5]},
    {"components": {"SIT": {"qc_leaf": False}}},  # SIT is off in this trial
    {"components": {"HCT": {"split": "reference"}}},
    {"model": {"device": "cpu", "trust_remote_code": True}},
    {"model": {"cpu_threads": 2}},
])
def test_settings_that_cannot_change_the_numbers_keep_the_key(raw):
    assert trial(raw, components=("LT",)).key == trial(components=("LT",)).key


@pytest.mark.parametrize("raw", [
    {"lora": {"r": 4}},
    {"training": {"learning_rate": 0.01}},
    {"scoring": {"threshold": 0.4}},
    {"model": {"tiny": {"vocab_size": 700}}},
    {"model": {"dtype": "float32"}},
    {"data": {"eval": {"holdout_seed": 3}}},
    {"components": {"LT": {}}, "data": {"max_train_rows": 100}},
])
def test_each_used_setting_changes_the_key(raw):
    assert trial(raw, components=("LT",)).key != trial(components=("LT",)).key


def test_component_settings_enter_the_key_only_when_the_component_is_on(tmp_path):
    vocab = tmp_path / "vocab.yaml"
    vocab.write_text("version: 1\nattributes:\n  brand:\n    values:\n      acme: [acme]\n",
                     encoding="utf-8")
    on_sit = {"task": "QI", "components": ("SIT",)}
    on_dg = {"task": "QI", "components": ("DG",)}
    assert trial({"components": {"SIT": {"vocab": str(vocab)}}}, **on_sit).key != \
        trial(**on_sit).key
    assert trial({"components": {"DG": {"vocab": str(vocab)}}}, **on_dg).key != trial(**on_dg).key
    assert trial({"components": {"SIT": {"vocab": str(vocab)}}}, **on_dg).key == trial(**on_dg).key
    assert trial({"components": {"SIT": {"qc_leaf": False}}}, **on_sit).key != trial(**on_sit).key


def test_inputs_change_the_key_and_neighbours_do_not():
    base = trial(task="QI", components=("SIT",))
    # the QI data changes the key; so does the QC data SIT reads its leaf categories from
    assert trial(task="QI", components=("SIT",),
                 fingerprints={**FINGERPRINTS, "QI": "qi-data-2"}).key != base.key
    assert trial(task="QI", components=("SIT",),
                 fingerprints={**FINGERPRINTS, "QC": "qc-data-2"}).key != base.key
    assert trial(task="QI", components=("SIT",), fingerprints={"QI": "qi-data-1"}).key != base.key
    # which tasks the sweep runs is not an input: the tokenizer is trained on the data directory
    qc_alone = build_plan(parse_config({"tasks": ["QC"]}), data_fingerprints=FINGERPRINTS)
    both = build_plan(parse_config({"tasks": ["QC", "QI"]}), data_fingerprints=FINGERPRINTS)
    assert qc_alone.keys < both.keys


def test_checker_identity_follows_the_checker_model():
    base = trial(components=("QR",))
    checker = base.checker_identity(None)
    assert trial({"model": {"tiny": {"hidden_size": 48}}}, components=("QR",)) \
        .checker_identity(None) != checker
    assert trial({"model": {"dtype": "float32"}}, components=("QR",)) \
        .checker_identity(None) != checker
    assert trial({"scoring": {"batch_size": 3}}, components=("QR",)) \
        .checker_identity(None) == checker
    assert "prompt" in checker and checker["prompt"]["template"]


def test_search_trials_have_their_own_key_and_point_to_their_base():
    planned = trial(components=("QR",))
    searched = trial(components=("QR",), overrides={"lora.r": 4}, role="search", base=planned.key)
    assert searched.key != planned.key
    assert searched.params()["search_base"] == planned.key
    assert searched.params()["trial_role"] == "search"


@pytest.mark.parametrize(("name", "settings"), [
    ("TR", {"translator": "transformers", "model": "some/translator"}),
    ("DG", {"generator": "llm", "model": "some/llm"}),
])
def test_model_backed_stage_keys_follow_the_dtype(name, settings):
    from harness.components import REGISTRY

    def stage_key(dtype: str) -> dict:
        spec = trial({"model": {"dtype": dtype}, "components": {name: settings}}, task="QI",
                     components=(name,))
        return REGISTRY[name].key_settings(spec.context().settings(name), spec.context())

    assert stage_key("bfloat16") != stage_key("float32")


def test_vary_split_changes_only_the_qr_fold_split_of_later_seeds():
    def key(seed: int, vary: bool, components=("QR",)) -> str:
        config = parse_config({"seeds": {"values": [0, 1], "vary_split": vary}})
        return resolve_trial(config, task="QC", components=components, seed=seed, model="tiny",
                             fingerprints=FINGERPRINTS).key

    assert key(0, True) == key(0, False)  # seed 0 folds with seed 0 either way
    assert key(1, True) != key(1, False)
    assert key(1, True, ("LT",)) == key(1, False, ("LT",))

"""Passwords in URLs never reach the console, MLflow or error messages."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mlflow
import pytest

from harness.cli import main
from harness.secrets import error_message, mask, masked_json, remember, url_secrets
from harness.sweep import run_sweep
from tests.pg_cluster import PASSWORD
from tests.sweep_helpers import tiny_config


@pytest.mark.parametrize(("url", "masked"), [
    ("postgresql://user:secret@host/db", "postgresql://user:***@host/db"),
    ("postgresql+psycopg://user:pa/ss@host:5432/db", "postgresql+psycopg://user:***@host:5432/db"),
    ("postgresql://user:pa@ss@host/db", "postgresql://user:***@host/db"),
    ("postgresql://user:a/b@c/d@host/db?sslmode=require",
     "postgresql://user:***@host/db?sslmode=require"),
    ("postgresql://:secret@host/db", "postgresql://:***@host/db"),
    ("redis://:p@ss@cache:6379/0", "redis://:***@cache:6379/0"),
    ("postgresql://host/db?sslmode=require&password=s3cret&x=1",
     "postgresql://host/db?sslmode=require&password=***&x=1"),
    ("postgresql://host/db?PASSWORD=s%40cret", "postgresql://host/db?PASSWORD=***"),
    ("https://mlflow.example:5000/?token=abc&user=me", "https://mlflow.example:5000/?token=***&user=me"),
    ("postgresql://u:p?q@host/db", "postgresql://u:***@host/db"),
    # nothing to hide: unchanged
    ("postgresql://postgres@localhost/db", "postgresql://postgres@localhost/db"),
    ("sqlite:////tmp/with:colon@at.db", "sqlite:////tmp/with:colon@at.db"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("https://host/search?email=a@b.com", "https://host/search?email=a@b.com"),
])
def test_mask_hides_the_password_of_every_url_form(url, masked):
    assert mask(url) == masked


def test_mask_finds_urls_inside_text_and_keeps_the_rest():
    text = "could not open 'postgresql://u:p/w@db1/x' nor \"mysql://a:b@c@db2/y\", giving up"
    assert mask(text) == "could not open 'postgresql://u:***@db1/x' nor \"mysql://a:***@db2/y\", giving up"


def test_remembered_passwords_are_hidden_where_a_driver_quotes_pieces_of_the_url(caplog):
    remember("postgresql://user:long/secret@w@127.0.0.1:1/db")
    assert "long/secret@w" in url_secrets("postgresql://user:long/secret@w@127.0.0.1:1/db")
    # SQLAlchemy splits at the first `@`: the host it reports is `w@127.0.0.1`
    message = "failed to resolve host 'w@127.0.0.1' (password long/secret@w)"
    assert mask(message) == "failed to resolve host '***@127.0.0.1' (password ***)"
    assert error_message(RuntimeError("auth long/secret@w")) == "RuntimeError: auth ***"
    with caplog.at_level(logging.WARNING):
        logging.getLogger("sqlalchemy.pool").warning("engine for %s", "long/secret@w")
    assert caplog.messages == ["engine for ***"]


def test_masked_config_json_hides_storage_and_tracking_passwords(tmp_path):
    config = tiny_config(tmp_path, study={"storage": "postgresql://u:x/y@z@h/db"},
                         tracking={"uri": "https://u:tok@mlflow.example"})
    dumped = json.loads(masked_json(config))
    assert dumped["study"]["storage"] == "postgresql://u:***@h/db"
    assert dumped["tracking"]["uri"] == "https://u:***@mlflow.example"
    assert dumped["name"] == config.name and "x/y" not in masked_json(config, indent=2)


def test_cli_storage_error_is_one_line_without_the_password(tmp_path, capsys):
    config = tmp_path / "sweep.yaml"
    config.write_text(f"name: e2e\ncache_dir: {tmp_path / 'cache'}\n")
    code = main(["sweep", str(config), "--storage", "postgresql://u:pa/ss@word9@127.0.0.1:1/db"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --storage / study.storage") and err.count("\n") == 1
    assert "pa/ss" not in err and "word9" not in err and "***" in err


def test_tracking_store_error_is_one_line_without_the_password(tmp_path, capsys):
    config = tmp_path / "sweep.yaml"
    config.write_text(f"name: e2e\ncache_dir: {tmp_path / 'cache'}\n"
                      f"tracking: {{uri: 'sqlite:///{tmp_path}/no/such/dir/x.db?password=hunter22'}}\n")
    assert main(["report", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "hunter22" not in err


@pytest.mark.slow
def test_sweep_on_a_password_storage_never_writes_the_password(tmp_path, monkeypatch, postgres):
    monkeypatch.chdir(tmp_path)  # MLflow's artifacts land under the working directory
    storage = postgres.create_database("secrets_sweep")
    assert "%40" in storage and "/" in storage.split("@")[0]  # `/` and `@` (encoded) in it
    config = tiny_config(tmp_path, tasks=["QC"], design={"kind": "grid", "switches": []},
                         training={"epochs": 1, "learning_rate": 3e-3, "batch_size": 16,
                                   "max_length": 128},
                         study={"storage": storage})
    summary = run_sweep(config, progress=False, report=False)
    assert summary.finished == 1 and not summary.failed
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["e2e"])
    parent = runs[runs["tags.harness.role"] == "sweep"].iloc[0]
    assert "postgresql://harness:***@127.0.0.1" in parent["params.config"]
    shown = json.loads(Path(mlflow.artifacts.download_artifacts(
        run_id=parent["run_id"], artifact_path="config.json", dst_path=str(tmp_path / "dl"))).read_text())
    assert shown["study"]["storage"].startswith("postgresql://harness:***@127.0.0.1")
    secrets = [PASSWORD, PASSWORD.replace("@", "%40")]
    for value in runs.to_numpy().ravel():
        assert not any(s in str(value) for s in secrets)
    for path in tmp_path.rglob("*"):  # the MLflow store, every artifact, the cache
        if path.is_file():
            data = path.read_bytes()
            assert not any(s.encode() in data for s in secrets), path

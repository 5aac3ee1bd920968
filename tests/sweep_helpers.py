"""Tiny sweep configurations shared by the end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd

from harness.config import parse_config

TINY_MODEL = {"name": "tiny", "tiny": {"hidden_size": 32, "num_layers": 1, "num_heads": 2,
                                       "num_kv_heads": 1, "intermediate_size": 64,
                                       "vocab_size": 600}}


def tiny_config(root: Path, **overrides):
    raw = {
        "name": "e2e",
        "data": {"source": "synth", "synth": {"scale": "tiny", "seed": 0}},
        "tasks": ["QC", "QI"],
        "model": TINY_MODEL,
        "lora": {"r": 8, "alpha": 16, "train_embeddings": True, "train_lm_head": True},
        "training": {"epochs": 6, "learning_rate": 3e-3, "batch_size": 16, "max_length": 256},
        "design": {"kind": "grid", "switches": ["LT", "HCT"]},
        "tracking": {"uri": f"sqlite:///{root / 'mlflow.db'}"},
        "study": {"storage": f"sqlite:///{root / 'study.db'}"},
        "cache_dir": str(root / "cache"),
        "reports_dir": str(root / "reports"),
    }
    for key, value in overrides.items():
        raw[key] = value
    return parse_config(raw)


def child_runs(root: Path) -> pd.DataFrame:
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["e2e"])
    return runs[runs["tags.harness.role"] == "trial"].reset_index(drop=True)

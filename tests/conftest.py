"""Shared test setup: offline, quiet, and a tiny built-in benchmark."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# Two cores shared with torch: multi-threaded BLAS in scikit-learn only adds contention.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
pytest_plugins = ["tests.pg_cluster"]  # the `postgres` fixture: a throwaway PostgreSQL server

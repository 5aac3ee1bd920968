"""Local workers side by side: one small sweep run with 1, 2 and 3 workers on PostgreSQL.

Each run gets a fresh database in a throwaway PostgreSQL cluster (Debian's server binaries, as
the tests use), a fresh MLflow store and a fresh stage cache, and is timed as a user runs it:
`python -m harness sweep CONFIG --workers N --storage postgresql://...`. Reported: wall time, the
speed-up against one worker, and the coordination overhead per trial — worker-seconds not spent
inside a trial run (startup, planning, polling, waiting at the end), (N x wall - sum of trial run
durations) / trials. Asserts every run finished every trial once with the same F1 per trial key.
Writes bench/results/workers.md.

    python bench/workers.py [--workers 1 2 3] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the throwaway cluster helper lives with the tests

from tests.pg_cluster import Cluster, _bin_dir  # noqa: E402

TINY = {"name": "tiny", "tiny": {"hidden_size": 32, "num_layers": 1, "num_heads": 2,
                                 "num_kv_heads": 1, "intermediate_size": 64, "vocab_size": 600}}


def sweep_config(root: Path, epochs: int) -> dict:
    return {"name": "bench-workers", "data": {"source": "synth", "synth": {"scale": "tiny", "seed": 0}},
            "tasks": ["QC", "QI"], "model": TINY,
            "lora": {"r": 8, "alpha": 16, "train_embeddings": True, "train_lm_head": True},
            "training": {"epochs": epochs, "learning_rate": 3e-3, "batch_size": 16, "max_length": 256},
            "design": {"kind": "grid", "switches": ["LT"]}, "seeds": [0, 1, 2],
            "tracking": {"uri": f"sqlite:///{root / 'mlflow.db'}"},
            "cache_dir": str(root / "cache"), "reports_dir": str(root / "reports")}


def run(cluster: Cluster, workers: int, epochs: int, scratch: Path) -> dict:
    root = scratch / f"workers{workers}"
    root.mkdir()
    config = root / "sweep.yaml"
    config.write_text(yaml.safe_dump(sweep_config(root, epochs)))
    url = cluster.create_database(f"bench_workers_{workers}")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "harness", "sweep", str(config), "--workers",
                           str(workers), "--storage", url, "--no-progress"], cwd=root,
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"--workers {workers} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["bench-workers"],
                              filter_string="tags.`harness.role` = 'trial'")
    assert (runs["status"] == "FINISHED").all() and runs["tags.harness.trial_key"].is_unique
    inside = (runs["end_time"] - runs["start_time"]).dt.total_seconds().sum()
    return {"workers": workers, "wall": wall, "trials": len(runs), "inside": inside,
            "train": runs["metrics.train_seconds"].sum(),
            "f1": dict(zip(runs["tags.harness.trial_key"], runs["metrics.f1"], strict=True))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "workers.md")
    args = parser.parse_args()
    bin_dir = _bin_dir()
    if bin_dir is None:
        raise SystemExit("PostgreSQL server binaries missing (apt-get install postgresql)")
    scratch = Path(tempfile.mkdtemp(prefix="harness-bench-workers-"))
    pg_root = Path(tempfile.mkdtemp(prefix="harness-bench-pg-"))  # its own: the server may run as postgres
    cluster = Cluster(bin_dir, pg_root)
    results = []
    try:
        cluster.start()
        for workers in args.workers:
            results.append(run(cluster, workers, args.epochs, scratch))
            print(f"{workers} worker(s): {results[-1]['wall']:.1f} s", flush=True)
    finally:
        cluster.stop()
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(pg_root, ignore_errors=True)
    reference = results[0]
    for result in results[1:]:
        assert result["f1"] == reference["f1"], "F1 per trial differs between worker counts"
    rows = ["| workers | wall (s) | speed-up vs 1 | trials | sum of trial runs (s) | training (s) "
            "| coordination overhead per trial (s) |", "|---|---|---|---|---|---|---|"]
    for r in results:
        overhead = (r["workers"] * r["wall"] - r["inside"]) / r["trials"]
        rows.append(f"| {r['workers']} | {r['wall']:.1f} | {reference['wall'] / r['wall']:.2f}x | "
                    f"{r['trials']} | {r['inside']:.1f} | {r['train']:.1f} | {overhead:.2f} |")
    machine = f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores"
    text = "\n".join([
        "# Local workers on PostgreSQL", "",
        f"`python bench/workers.py --workers {' '.join(map(str, args.workers))} --epochs "
        f"{args.epochs}` on {machine}, {datetime.now(UTC):%Y-%m-%d}: the built-in benchmark at "
        "tiny scale, QC and QI, grid over LT, 3 seeds (12 trials), the tiny model. Every run "
        "finished each trial once, with the same F1 per trial key.", "", *rows, "",
        "The overhead counts each process's startup (interpreter, torch, the base model), planning, "
        "polling and the wait for the last trial; with trials of a few seconds it dominates, and "
        f"more workers than the {os.cpu_count()} cores only share them. Workers pay off when trials "
        "are long (GPU fine-tunes, or the default sweep's: README, 'Quick start').", ""])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()

"""How sure are the report's verdicts? Repeated A/A, placebo and planted-effect comparisons.

Runs one real sweep on the built-in benchmark with the tiny model: a grid over PLACEBO (the same
uninformative words after every query) and TR (the query translated to English: on the built-in
benchmark its lexicon knows every word, an effect of known positive direction) with many seeds.
Then, with exactly the test the report uses for its significance marker (paired cluster
bootstrap over query groups, 95%, seeds pooled with one shared resample and, from 3 seeds, the
seed t-interval; before any Holm correction), once with one seed per comparison (the least
protected case) and once pooled over 3 seeds (the default sweep's case):

* A/A: baseline seed 2k against baseline seed 2k+1 (same rows, another adapter init and order);
* placebo: X against X+PLACEBO under the same seed, for X = baseline and TR;
* planted: baseline against TR under the same seed.

It prints the share of null (A/A + placebo) comparisons marked significant, with its
Clopper-Pearson 95% interval (goal: at most 5%), and for the planted effect the share marked
significant with the right sign (power).

    python bench/calibration.py [--seeds 8] [--scale small] [--max-train-rows 1200] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from statsmodels.stats.proportion import proportion_confint

from harness.config import parse_config
from harness.paired import align, pooled_over_seeds, verdict
from harness.record import TrialRecord
from harness.sweep import run_sweep
from harness.tracking import Tracker, load_predictions, trial_records

os.environ.setdefault("HF_HUB_OFFLINE", "1")

def sweep_config(root: Path, *, seeds: int, scale: str, max_train_rows: int, epochs: float):
    return parse_config({
        "name": "calibration",
        "data": {"source": "synth", "synth": {"scale": scale, "seed": 0},
                 "max_train_rows": max_train_rows},
        "tasks": ["QC", "QI"],
        "model": {"name": "tiny"},
        "lora": {"r": 16, "alpha": 16, "dropout": 0.05, "train_embeddings": True,
                 "train_lm_head": True},
        "training": {"epochs": epochs, "learning_rate": 3e-3, "batch_size": 16, "max_length": 384},
        "scoring": {"batch_size": 64, "predict_unlabelled": False},
        "design": {"kind": "grid", "switches": ["PLACEBO", "TR"]},
        "seeds": list(range(seeds)),
        "tracking": {"uri": f"sqlite:///{root / 'mlflow.db'}"},
        "study": {"storage": f"sqlite:///{root / 'study.db'}"},
        "cache_dir": str(root / "cache"),
        "reports_dir": str(root / "reports"),
    })


def marked(pairs: list[tuple[TrialRecord, TrialRecord]]) -> str:
    """The report's marker for one comparison pooled over its seeds (one pair per seed):
    helps / hurts / no detectable difference (before any Holm correction)."""
    result = pooled_over_seeds([align(a.predictions, b.predictions) for a, b in pairs],
                               groups="group")
    return verdict(result, p_adjusted=result.p_value)


def comparisons(records: list[TrialRecord], seeds: int, *, per: int) -> dict[str, list[str]]:
    """Marker outcomes per kind, each comparison pooled over `per` seeds (consecutive seed
    groups); a comparison with a trial that learned nothing is skipped."""
    by = {(r.task, r.label, r.seed): r for r in records if r.role == "planned"}
    groups = [list(range(g, g + per)) for g in range(0, seeds - per + 1, per)]
    cases: dict[str, list[list[tuple]]] = {"A/A": [], "placebo": [], "planted TR": []}
    for task in ("QC", "QI"):
        for first, second in zip(groups[0::2], groups[1::2], strict=False):
            cases["A/A"].append([((task, "baseline", s), (task, "baseline", t))
                                 for s, t in zip(first, second, strict=True)])
        for group in groups:
            for a, b in (("baseline", "PLACEBO"), ("TR", "TR+PLACEBO")):
                cases["placebo"].append([((task, a, s), (task, b, s)) for s in group])
            cases["planted TR"].append([((task, "baseline", s), (task, "TR", s)) for s in group])
    return {name: [marked([(by[a], by[b]) for a, b in case]) for case in items
                   if all(a in by and b in by for a, b in case)]
            for name, items in cases.items()}


def share(hits: int, total: int) -> str:
    low, high = proportion_confint(hits, total, alpha=0.05, method="beta")
    return f"{hits}/{total} = {hits / total:.1%} (95% CI {low:.1%}–{high:.1%})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--scale", default="small", choices=("tiny", "small", "medium"))
    parser.add_argument("--max-train-rows", type=int, default=1200)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="calibration-"))
    config = sweep_config(root, seeds=args.seeds, scale=args.scale,
                          max_train_rows=args.max_train_rows, epochs=args.epochs)
    started = time.perf_counter()
    run_sweep(config, progress=False, report=False)
    tracker = Tracker(uri=config.tracking.uri, experiment=config.name)
    records = trial_records(tracker, config.name)
    degenerate = [r.name for r in records if r.degenerate]
    records = [r for r in records if not r.degenerate]
    load_predictions(tracker, records)
    print(f"\nCalibration: {args.seeds} seeds, scale {args.scale}, {args.max_train_rows} train rows "
          f"per task, {args.epochs:g} epochs; {len(records)} trials used "
          f"({len(degenerate)} that learned nothing left out), {time.perf_counter() - started:.0f} s; "
          f"{platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}")
    for per in (1, 3):
        if per > args.seeds:
            continue
        found = comparisons(records, args.seeds, per=per)
        null = found["A/A"] + found["placebo"]
        print(f"Comparisons pooled over {per} seed(s):")
        print(f"- false positives (A/A + placebo marked significant): "
              f"{share(sum(v != 'no detectable difference' for v in null), len(null))}")
        for name in ("A/A", "placebo"):
            values = found[name]
            if values:
                print(f"  - {name}: "
                      f"{share(sum(v != 'no detectable difference' for v in values), len(values))}")
        planted = found["planted TR"]
        if planted:
            print(f"- power (planted TR found helping): "
                  f"{share(sum(v == 'helps' for v in planted), len(planted))}; "
                  f"found hurting: {sum(v == 'hurts' for v in planted)}")

if __name__ == "__main__":
    main()

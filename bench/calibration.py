"""How sure are the report's verdicts? Repeated A/A, placebo and planted-effect comparisons.

Runs the sweep `experiments/calibration.yaml` (a grid over PLACEBO, the same uninformative words
after every query, and TR, the query translated to English by the benchmark's lexicon: a
planted effect of known positive direction on the languages training lacks) with many seeds,
then judges, with exactly the report's test (harness.paired.pooled_over_seeds + verdict:
one 95% interval holding the rows' and the seeds' error; before any Holm correction),
comparisons pooled over k consecutive seeds (k = 2 and 3; the default sweep runs 3):

* A/A: baseline seeds {0..k-1} against baseline seeds {k..2k-1}, ... (same rows, other training);
* placebo: X against X+PLACEBO under the same seeds, for X = baseline and TR;
* planted: baseline against TR under the same seeds.

It reports the share of null (A/A + placebo) comparisons marked significant, with its
Clopper-Pearson 95% interval (goal: at most 5%), and for the planted effect the share marked
significant with the right sign (power). For one seed, which the report does not judge, it
shows what the rows-only interval alone would have claimed. The table goes to
bench/results/calibration.md.

    python bench/calibration.py [--seeds 12] [--max-train-rows 1200] [--epochs 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from statsmodels.stats.proportion import proportion_confint

from harness.config import parse_config
from harness.paired import PooledResult, align, pooled_over_seeds, verdict
from harness.record import TrialRecord
from harness.sweep import run_sweep
from harness.tracking import Tracker, load_predictions, trial_records

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
EXPERIMENT = ROOT / "experiments" / "calibration.yaml"
RESULTS = ROOT / "bench" / "results" / "calibration.md"


def sweep_config(root: Path, *, seeds: int, max_train_rows: int | None = None,
                 epochs: float | None = None):
    """experiments/calibration.yaml with its seeds, paths and (where given) size set for this
    run."""
    raw = yaml.safe_load(EXPERIMENT.read_text(encoding="utf-8"))
    raw["seeds"] = list(range(seeds))
    if max_train_rows is not None:
        raw["data"]["max_train_rows"] = max_train_rows
    if epochs is not None:
        raw["training"]["epochs"] = epochs
    raw |= {"tracking": {"uri": f"sqlite:///{root / 'mlflow.db'}"},
            "study": {"storage": f"sqlite:///{root / 'study.db'}"},
            "cache_dir": str(root / "cache"), "reports_dir": str(root / "reports")}
    return parse_config(raw, source=str(EXPERIMENT))


def _judged(result: PooledResult) -> str:
    """The report's verdict; for one seed, what its rows-only interval alone would say."""
    if result.n_seeds > 1:
        return verdict(result, p_adjusted=result.p_value)
    if result.rows_low > 0:
        return "helps"
    return "hurts" if result.rows_high < 0 else "no detectable difference"


def marked(pairs: list[tuple[TrialRecord, TrialRecord]]) -> str:
    """The marker for one comparison pooled over its seeds (one pair per seed):
    helps / hurts / no detectable difference (before any Holm correction)."""
    return _judged(pooled_over_seeds([align(a.predictions, b.predictions) for a, b in pairs],
                                     groups="group"))


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
    if total == 0:
        return "none (every such comparison had a trial that learned nothing)"
    low, high = proportion_confint(hits, total, alpha=0.05, method="beta")
    return f"{hits}/{total} = {hits / total:.1%} (95% CI {low:.1%}–{high:.1%})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=12)
    parser.add_argument("--max-train-rows", type=int, default=None,
                        help="train rows per task (default: all, as the default sweep)")
    parser.add_argument("--epochs", type=float, default=None,
                        help="default: the file's, which are the default sweep's")
    parser.add_argument("--workers", type=int, default=2, help="local worker processes")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="calibration-"))
    config = sweep_config(root, seeds=args.seeds, max_train_rows=args.max_train_rows,
                          epochs=args.epochs)
    started = time.perf_counter()
    run_sweep(config, progress=False, report=False, workers=args.workers)
    tracker = Tracker(uri=config.tracking.uri, experiment=config.name)
    records = trial_records(tracker, config.name)
    degenerate = [r.name for r in records if r.degenerate]
    records = [r for r in records if not r.degenerate]
    load_predictions(tracker, records)
    minutes = (time.perf_counter() - started) / 60
    lines = [
        "# Calibration of the report's significance marker", "",
        f"`python bench/calibration.py {' '.join(sys.argv[1:])}`".replace(" `", "`") + " "
        f"(seeds {args.seeds}, {config.data.max_train_rows or 'all'} train rows per task, "
        f"{config.training.epochs:g} epochs, LoRA dropout {config.lora.dropout:g}, "
        f"{args.workers} workers), "
        f"{datetime.date.today().isoformat()}, {minutes:.1f} min; experiments/calibration.yaml, "
        f"{len(records)} trials used ({len(degenerate)} that learned nothing left out); "
        f"{platform.machine()} CPU with {os.cpu_count()} cores, {torch.get_num_threads()} torch "
        f"threads, torch {torch.__version__}.", "",
        "| seeds per comparison | null comparisons marked significant (A/A + placebo) | A/A | "
        "placebo | planted TR found helping (power) | planted TR found hurting |",
        "|---|---|---|---|---|---|"]
    for per in (1, 2, 3):
        if 2 * per > args.seeds:
            continue
        found = comparisons(records, args.seeds, per=per)
        null = found["A/A"] + found["placebo"]
        planted = found["planted TR"]
        def false(values: list[str]) -> str:
            return share(sum(v != "no detectable difference" for v in values), len(values))
        label = f"{per} (not judged by the report: rows-only interval)" if per == 1 else str(per)
        lines.append(f"| {label} | {false(null)} | {false(found['A/A'])} | "
                     f"{false(found['placebo'])} | "
                     f"{share(sum(v == 'helps' for v in planted), len(planted))} | "
                     f"{sum(v == 'hurts' for v in planted)} |")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()

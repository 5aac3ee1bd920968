"""The report is a pure function of the plan and its trial records: no MLflow, no torch."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from harness.config import parse_config
from harness.plan import build_plan, resolve_trial
from harness.record import TrialRecord
from harness.report import make_report
from harness.stats import binary_scores, trial_metrics

FINGERPRINTS = {"QC": "qc-1", "QI": "qi-1"}
CONFIG = parse_config({"tasks": ["QC"], "seeds": [0, 1],
                       "design": {"kind": "grid", "switches": ["LT"]}})


def predictions(accuracy: float, seed: int, rows: int = 200) -> pd.DataFrame:
    labels = np.random.default_rng(0).integers(0, 2, rows)  # the same evaluation rows
    flip = np.random.default_rng(seed).random(rows) > accuracy
    return pd.DataFrame({"id": np.arange(rows), "language": np.where(np.arange(rows) % 4, "en", "ja"),
                         "label": labels, "p_yes": 0.5, "prediction": np.where(flip, 1 - labels, labels)})


def record(spec, accuracy: float, **changes) -> TrialRecord:
    frame = predictions(accuracy, seed=spec.seed + int(accuracy * 100))
    base = TrialRecord.from_spec(spec, eval_split="test", train_rows=1000, eval_rows=len(frame))
    base.metrics = trial_metrics(frame, seen_languages=["en"])
    return dataclasses.replace(base, **{"status": "FINISHED", "predictions": frame, **changes})


def report(records: list[TrialRecord], plan=None) -> str:
    plan = plan or build_plan(CONFIG, data_fingerprints=FINGERPRINTS)
    return make_report(CONFIG, plan=plan, records=records, train_languages={"QC": ["en"]},
                       data_source="synth", footer_text="footer")


def row(text: str, label: str) -> list[str]:
    line = next(line for line in text.splitlines()
                if line.startswith((f"| {label} ", f"| **{label}** ")))  # the best row is bold
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_cells_are_the_mean_over_seeds_of_this_plans_trials():
    plan = build_plan(CONFIG, data_fingerprints=FINGERPRINTS)
    accuracy = {"baseline": 0.7, "LT": 0.9}
    records = [record(t, accuracy[t.label]) for t in plan.trials]
    text = report(records, plan)
    for label, records_of in (("baseline", [r for r in records if r.label == "baseline"]),
                              ("LT", [r for r in records if r.label == "LT"])):
        mean = np.mean([binary_scores(r.predictions["label"], r.predictions["prediction"]).f1
                        for r in records_of])
        assert row(text, label)[1].startswith(f"{mean:.3f} [")
    assert "ja *" in text  # a language absent from training is marked
    # the main table's Δ vs baseline is the paired comparison's Δ and CI
    compared = next(line for line in text.splitlines() if line.startswith("| QC | baseline → LT |"))
    delta, ci = [cell.strip() for cell in compared.strip("|").split("|")][2:4]
    assert row(text, "LT")[2].startswith(f"{delta} {ci}")
    assert row(text, "baseline")[2] == ""


def test_records_of_other_plans_and_unfinished_runs_are_not_counted():
    plan = build_plan(CONFIG, data_fingerprints=FINGERPRINTS)
    records = [record(t, 0.8) for t in plan.trials if t.label == "baseline"]
    other_data = resolve_trial(CONFIG, task="QC", components=("LT",), seed=0, model="tiny",
                               fingerprints={"QC": "other-data", "QI": "qi-1"})
    other_model = resolve_trial(CONFIG, task="QC", components=("LT",), seed=0, model="gpt2",
                                fingerprints=FINGERPRINTS)
    lt = next(t for t in plan.trials if t.label == "LT")
    records += [record(other_data, 0.99), record(other_model, 0.99),
                record(lt, 0.99, status="FAILED"), record(lt, 0.99, status="KILLED")]
    text = report(records, plan)
    assert row(text, "LT")[1] == "–"
    assert row(text, "baseline")[1] != "–"


def test_search_counts_only_this_plans_search_trials_and_their_pruned_ones():
    config = parse_config({"tasks": ["QC"], "components": {"QR": {"use_model": False}},
                           "design": {"kind": "optuna", "always_on": ["QR"],
                                      "optuna": {"qr_languages": ["en"]}}})
    plan = build_plan(config, data_fingerprints=FINGERPRINTS)
    base = plan.trials[0]
    searched = []
    for number in range(4):
        knobs = {f"components.QR.thresholds.en.{n}": 0.1 * (number + 1)
                 for n in ("hi_cos", "hi_jac", "lo_cos", "lo_jac")}
        spec = resolve_trial(config, task="QC", components=base.components, seed=0,
                             model="tiny", fingerprints=FINGERPRINTS, overrides=knobs,
                             role="search", rows=("search",), base=base.key)
        pruned = number == 3
        searched.append(record(spec, 0.6 + 0.05 * number, eval_split="search", pruned=pruned,
                               status="KILLED" if pruned else "FINISHED"))
    stranger = resolve_trial(config, task="QC", components=base.components, seed=0, model="tiny",
                             fingerprints=FINGERPRINTS, role="search", base="not-this-plan")
    text = make_report(config, plan=plan, records=[record(base, 0.8), *searched,
                                                   record(stranger, 0.99)],
                       train_languages={"QC": ["en"]}, data_source="synth", footer_text="")
    assert "4 search trials (1 pruned)" in text
    best = max(searched[:3], key=lambda r: r.metrics["f1"])
    assert f"{best.metrics['f1']:.4f}" in text.split("## Optuna search (QC)")[1]
    assert "0.99" not in text.split("## Optuna search (QC)")[1]

"""Two sweeps side by side: `python -m harness compare A.yaml B.yaml`.

For every (model, task, configuration) that both sweeps ran, F1 of each (mean over seeds) and
the paired difference B − A on the evaluation rows, where both scored the same rows (same ids,
same labels), seeds paired by seed value as in the report; where the rows differ the table says
so and gives no interval. Holm-adjusted over the comparisons in the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.config import SweepConfig, load_config, with_data_dir
from harness.data.prepare import PreparedData, prepare_data
from harness.errors import HarnessError
from harness.paired import align, holm, verdict
from harness.plan import Plan, build_plan
from harness.record import TrialRecord
from harness.report import make_table
from harness.tracking import Tracker, load_predictions, resolve_tracking_uri, trial_records
from harness.verdicts import ALPHA, format_p, paired_over_seeds


@dataclass
class LoadedSweep:
    """A finished sweep read back from MLflow: its config, data, plan and trial records."""

    config: SweepConfig
    data: PreparedData
    plan: Plan
    tracker: Tracker
    records: list[TrialRecord]


def load_sweep(config_path: Path, data_dir: Path | None = None) -> LoadedSweep:
    """The plan's records (finished and killed) with the planned trials' predictions."""
    config = load_config(config_path)
    if data_dir is not None:
        config = with_data_dir(config, data_dir)
    tracking_uri = resolve_tracking_uri(config.tracking.uri)
    experiment = config.tracking.experiment or config.name
    tracker = Tracker.existing(uri=tracking_uri, experiment=experiment)
    if tracker is None:
        raise HarnessError(f"no MLflow experiment '{experiment}' at {tracking_uri} (run the sweep "
                           "first, or point tracking.uri / MLFLOW_TRACKING_URI at its store)")
    data = prepare_data(config)
    plan = build_plan(config, data_fingerprints=data.fingerprints)
    records = [r for r in trial_records(tracker, config.name, statuses=("FINISHED", "KILLED"))
               if plan.owns(r)]
    if not any(r.status == "FINISHED" for r in records):
        logged = tracker.logged_data_directory(config.name)
        hint = (f"; the sweep's data was {logged} — rerun with --data {logged}"
                if logged and logged != str(data.directory) else "")
        raise HarnessError(f"no finished trials of this plan of sweep '{config.name}' in MLflow "
                           f"({tracker.uri}) for the data in {data.directory}{hint}")
    load_predictions(tracker, [r for r in records if r.status == "FINISHED" and r.role == "planned"])
    return LoadedSweep(config, data, plan, tracker, records)


def _by_cell(sweep: LoadedSweep) -> dict[tuple[str, str, str], dict[int, TrialRecord]]:
    cells: dict[tuple[str, str, str], dict[int, TrialRecord]] = {}
    for record in sweep.records:
        if record.status == "FINISHED" and record.role == "planned" and record.heldout_language is None:
            cells.setdefault((record.model, record.task, record.label), {})[record.seed] = record
    return cells


def compare_sweeps(a: LoadedSweep, b: LoadedSweep, *, n_resamples: int = 2000) -> str:
    """The side-by-side markdown table."""
    cells_a, cells_b = _by_cell(a), _by_cell(b)
    common = [cell for cell in cells_a if cell in cells_b]
    if not common:
        raise HarnessError(f"sweeps '{a.config.name}' and '{b.config.name}' share no "
                           "(model, task, configuration) to compare")
    rows, results = [], {}
    for cell in common:
        side_a, side_b = cells_a[cell], cells_b[cell]
        f1_a = np.mean([r.metrics["f1"] for r in side_a.values()])
        f1_b = np.mean([r.metrics["f1"] for r in side_b.values()])
        seeds = sorted(set(side_a) & set(side_b))
        note, result = "", None
        if not seeds:
            note = "no seed in common: unpaired"
        else:
            try:
                pairs = [align(side_a[s].predictions, side_b[s].predictions) for s in seeds]
            except ValueError as error:
                note = f"evaluation rows differ ({error}): unpaired, no interval"
            else:
                result = paired_over_seeds(pairs, n_resamples=n_resamples)
                if result.n_seeds >= 2:
                    results[cell] = result.p_value
                else:
                    note = "1 seed: rows-only interval, no verdict"
        rows.append((cell, f1_a, f1_b, seeds, result, note))
    adjusted = holm({"/".join(c): p for c, p in results.items()})
    table = []
    for (model, task, label), f1_a, f1_b, seeds, result, note in rows:
        if result is None:
            table.append([model, task, label, f"{f1_a:.3f}", f"{f1_b:.3f}", f"{f1_b - f1_a:+.3f}",
                          "–", "–", note])
            continue
        p_holm = adjusted.get("/".join((model, task, label)))
        said = note or verdict(result, alpha=ALPHA, p_adjusted=p_holm)
        table.append([model, task, label, f"{f1_a:.3f}", f"{f1_b:.3f}",
                      f"{result.difference:+.3f}", f"[{result.low:+.3f}, {result.high:+.3f}]",
                      f"{format_p(result.p_value)} / {format_p(p_holm)}" if p_holm is not None else "–",
                      f"{said} (seeds {', '.join(map(str, seeds))})"])
    header = (f"Sweep A: {a.config.name} ({a.data.source}); sweep B: {b.config.name} "
              f"({b.data.source}). Δ = B − A, paired on the same evaluation rows and seeds; "
              "95% CI and p as in the report (rows and seeds), Holm over this table.")
    return header + "\n\n" + make_table(
        ["model", "task", "configuration", "F1 A", "F1 B", "Δ F1", "95% CI", "p / Holm p",
         "verdict"], table)

"""Markdown ablation report, built only from what the sweep logged to MLflow.

`reports/<sweep>/ablation.md`: the paper's Table-4 shape (one row per configuration, one column
per task plus the overall mean), each cell `mean ± 95% CI` (bootstrap over evaluation rows, and
across seeds when there are several), a per-language table with unseen languages marked, the QR
audit against injected-noise ground truth, and failures.
"""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from harness import __version__
from harness.cache import atomic_write
from harness.config import SweepConfig
from harness.data.prepare import PreparedData
from harness.plan import Plan, models_of, ordered
from harness.stats import pooled_bootstrap_interval
from harness.tracking import TRIAL_KEY_TAG, Tracker


def make_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table."""
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|")
    lines = ["| " + " | ".join(map(cell, headers)) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def _label(configuration, task: str) -> str:
    return "+".join(ordered(configuration.effective(task))) or "baseline"


def _task_labels(plan: Plan, task: str) -> list[str]:
    """The task's distinct effective configurations, in design order."""
    return list(dict.fromkeys(_label(c, task) for c in plan.configurations))


def _fmt(mean: float, low: float, high: float) -> str:
    half = max(high - mean, mean - low)
    return f"{mean:.4f} ± {half:.4f}"


class _Results:
    """Finished trial runs indexed by (model, task, components label, held-out language)."""

    def __init__(self, results: pd.DataFrame, tracker: Tracker, plan: Plan,
                 train_languages: dict[str, list[str]]) -> None:
        self.frame = results
        self.train_languages = train_languages
        self.tracker = tracker
        self.by_key = {row[f"tags.{TRIAL_KEY_TAG}"]: row for _, row in results.iterrows()}
        self.plan = plan
        self._predictions: dict[str, pd.DataFrame] = {}

    def runs(self, *, model: str, task: str, label: str, heldout: str | None = None) -> list[pd.Series]:
        keys = [t.key for t in self.plan.trials if t.model == model and t.task == task
                and t.label == label and t.heldout_language == heldout]
        return [self.by_key[k] for k in keys if k in self.by_key]

    def predictions(self, run: pd.Series) -> pd.DataFrame:
        run_id = run["run_id"]
        if run_id not in self._predictions:
            name = run.get("params.eval_split", "test")
            self._predictions[run_id] = self.tracker.load_frame(run_id, f"predictions/{name}.csv")
        return self._predictions[run_id]

    def cell(self, runs: list[pd.Series]) -> tuple[float, float, float] | None:
        """Mean F1 over the runs (seeds) with its 95% interval, from the logged predictions."""
        if not runs:
            return None
        return pooled_bootstrap_interval([self.predictions(r) for r in runs])


def _ablation_table(results: _Results, config: SweepConfig, plan: Plan, model: str) -> str:
    headers = ["configuration", *config.tasks] + (["overall"] if len(config.tasks) > 1 else [])
    rows = []
    for configuration in plan.configurations:
        cells, means = [], []
        for task in config.tasks:
            label = _label(configuration, task)
            value = results.cell(results.runs(model=model, task=task, label=label))
            cells.append("–" if value is None else _fmt(*value))
            if value is not None:
                means.append(value[0])
        if len(config.tasks) > 1:
            cells.append(f"{np.mean(means):.4f}" if len(means) == len(config.tasks) else "–")
        rows.append([configuration.label, *cells])
    baseline_row = ["all-\"yes\" baseline"]
    for task in config.tasks:
        runs = [r for _, r in results.frame.iterrows() if r.get("params.task") == task
                and r.get("params.model") == model and r.get("params.heldout_language", "") in ("", None)]
        baseline_row.append(f"{runs[0]['metrics.baseline_f1']:.4f}" if runs else "–")
    if len(config.tasks) > 1:
        baseline_row.append("")
    rows.append(baseline_row)
    return make_table(headers, rows)


def _language_table(results: _Results, config: SweepConfig, plan: Plan, model: str, task: str) -> str:
    runs_of_task = [r for _, r in results.frame.iterrows()
                    if r.get("params.task") == task and r.get("params.model") == model]
    if not runs_of_task:
        return ""
    languages = sorted({c.split("/", 1)[1] for c in results.frame.columns
                        if c.startswith("metrics.rows/")
                        and any(pd.notna(r.get(c)) for r in runs_of_task)})
    train_languages = set(results.train_languages.get(task, ()))
    headers = ["configuration"] + [f"{lang}{'' if lang in train_languages else ' *'}" for lang in languages]
    headers += ["seen", "unseen"]
    rows = []
    for label in _task_labels(plan, task):
        runs = results.runs(model=model, task=task, label=label)
        if not runs:
            continue
        row = [label]
        for column in [*(f"f1/{lang}" for lang in languages), "f1/seen", "f1/unseen"]:
            values = [r.get(f"metrics.{column}") for r in runs if pd.notna(r.get(f"metrics.{column}"))]
            row.append(f"{np.mean(values):.3f}" if values else "–")
        rows.append(row)
    return make_table(headers, rows)


def _leave_language_out_table(results: _Results, config: SweepConfig, plan: Plan, model: str,
                              task: str) -> str:
    """F1 on language L of a model trained without L, beside the seen-language F1 of the model
    trained on every language: the honest estimate of unseen-language F1 on real data."""
    languages = [t.heldout_language for t in plan.trials if t.task == task and t.model == model
                 and t.heldout_language is not None]
    languages = list(dict.fromkeys(languages))
    if not languages:
        return ""
    rows = []
    for label in _task_labels(plan, task):
        full = results.runs(model=model, task=task, label=label)
        seen = [r["metrics.f1/seen"] for r in full if pd.notna(r.get("metrics.f1/seen"))]
        row = [label, f"{np.mean(seen):.3f}" if seen else "–"]
        held = []
        for language in languages:
            runs = results.runs(model=model, task=task, label=label, heldout=language)
            values = [r["metrics.f1"] for r in runs]
            held += values
            row.append(f"{np.mean(values):.3f}" if values else "–")
        row.append(f"{np.mean(held):.3f}" if held else "–")
        rows.append(row)
    headers = ["configuration", "seen F1 (all languages trained)",
               *(f"{lang} held out" for lang in languages), "mean held out"]
    return make_table(headers, rows)


def _qr_table(results: _Results, task: str) -> str:
    columns = [c for c in results.frame.columns if c.startswith("metrics.qr/precision/")]
    runs = [r for _, r in results.frame.iterrows()
            if r.get("params.task") == task and r.get("params.QR") == "True"
            and any(pd.notna(r.get(c)) for c in columns)]
    if not runs:
        return ""
    languages = sorted({c.rsplit("/", 1)[1] for c in columns if pd.notna(runs[0].get(c))},
                       key=lambda x: (x == "all", x))
    rows = []
    for language in languages:
        means = [np.mean([r[f"metrics.qr/{name}/{language}"] for r in runs])
                 for name in ("precision", "recall", "f1")]
        rows.append([language, *(f"{m:.3f}" for m in means)])
    removed = np.mean([r.get("metrics.qr/removed_fraction", np.nan) for r in runs])
    return (f"QR removed {removed:.1%} of training rows on average. Flagging scored against the "
            "injected-noise ground truth (mean over QR trials):\n\n"
            + make_table(["language", "precision", "recall", "F1"], rows))


def _qr_effect(results: _Results, config: SweepConfig, model: str) -> str:
    """Seen-language F1 of each trial with QR against the same trial without QR."""
    by_identity = {}
    for spec in results.plan.trials:
        if spec.key in results.by_key and spec.model == model:
            by_identity[(spec.task, spec.components, spec.seed, spec.heldout_language)] = spec.key
    lines = []
    for task in config.tasks:
        pairs = []
        for (t, components, seed, heldout), key in by_identity.items():
            if t != task or "QR" not in components:
                continue
            without = tuple(c for c in components if c != "QR")
            other = by_identity.get((task, without, seed, heldout))
            if other is None:
                continue
            on, off = results.by_key[key], results.by_key[other]
            if pd.notna(on.get("metrics.f1/seen")) and pd.notna(off.get("metrics.f1/seen")):
                pairs.append((on["metrics.f1/seen"], off["metrics.f1/seen"],
                              "+".join(without) or "baseline"))
        if not pairs:
            continue
        mean_on = np.mean([p[0] for p in pairs])
        mean_off = np.mean([p[1] for p in pairs])
        verdict = "improved" if mean_on > mean_off else "did NOT improve"
        compared = ", ".join(f"{label} {off:.4f} -> {on:.4f}" for on, off, label in pairs)
        lines.append(f"- {task}: QR {verdict} seen-language F1 ({mean_off:.4f} without, "
                     f"{mean_on:.4f} with; trials differing only in QR: {compared}).")
    return "\n".join(lines)


def _search_table(results: _Results, task: str, *, top: int = 5) -> str:
    """The best trials of an Optuna search (runs with searched knobs), best first."""
    knobs = [c for c in results.frame.columns if c.startswith("params.override.")]
    runs = results.frame[(results.frame.get("params.task") == task)
                         & results.frame[knobs].notna().any(axis=1)] if knobs else results.frame.iloc[0:0]
    if runs.empty:
        return ""
    pruned = runs.get("tags.harness.pruned", pd.Series(index=runs.index, dtype=object)) == "true"
    best = runs[~pruned].sort_values("metrics.f1", ascending=False).head(top)
    rows = [[f"{r['metrics.f1']:.4f}", f"{r.get('metrics.f1/seen', float('nan')):.4f}",
             f"{r.get('metrics.qr/removed_fraction', float('nan')):.1%}",
             ", ".join(f"{k.removeprefix('params.override.')}={r[k]}" for k in knobs if pd.notna(r[k]))]
            for _, r in best.iterrows()]
    return (f"{len(runs)} search trials ({int(pruned.sum())} pruned); the best {len(rows)}:\n\n"
            + make_table(["F1", "seen F1", "QR removed", "knobs"], rows))


def _footer(config: SweepConfig, data: PreparedData) -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=False, timeout=5,
                                cwd=Path(__file__).parent).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    import optuna
    import peft
    import torch
    import transformers

    fingerprints = ", ".join(f"{t} {f[:12]}" for t, f in data.fingerprints.items())
    return (f"harness {__version__} (commit {commit}), Python {platform.python_version()}, "
            f"torch {torch.__version__}, transformers {transformers.__version__}, "
            f"peft {peft.__version__}, optuna {optuna.__version__}; data fingerprints: "
            f"{fingerprints}; generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}.")


def write_report(config: SweepConfig, *, plan: Plan, results: pd.DataFrame, tracker: Tracker,
                 data: PreparedData) -> Path:
    """Write `reports/<sweep>/ablation.md` and return its path."""
    train_languages = {task: sorted(data.tasks[task].train.frame["language"].unique())
                       for task in data.tasks}
    indexed = _Results(results, tracker, plan, train_languages)
    eval_names = sorted(set(results.get("params.eval_split", pd.Series(dtype=str)).dropna()))
    sections = [
        f"# Ablation report: {config.name}",
        "",
        f"Design **{config.design.kind}** over {', '.join(config.design.switches) or 'no switches'}"
        + (f" (always on: {', '.join(config.design.always_on)})" if config.design.always_on else "")
        + f"; seeds {config.seeds}; data: {data.source}; evaluated on {', '.join(eval_names)}. "
        "Cells are F1 of the positive class, `mean ± half-width of the 95% CI` (bootstrap over "
        "evaluation rows, combined with the spread across seeds). Components that do not apply to "
        "a task (HCT on QI; SIT, DG on QC) are ignored for that task, so such rows repeat a trial.",
    ]
    for model in models_of(config):
        sections += ["", f"## Model `{model}`", "", _ablation_table(indexed, config, plan, model)]
        effect = _qr_effect(indexed, config, model)
        if effect:
            sections += ["", "### Does QR help?", "", effect]
        for task in config.tasks:
            table = _language_table(indexed, config, plan, model, task)
            if table:
                sections += ["", f"### {task} F1 per language (`*` = not in the training data)",
                             "", table]
            table = _leave_language_out_table(indexed, config, plan, model, task)
            if table:
                sections += ["", f"### {task} leave-language-out: F1 on a language the model "
                             "was trained without", "", table]
    for task in config.tasks:
        table = _search_table(indexed, task)
        if table:
            sections += ["", f"## Optuna search ({task})", "", table]
    for task in config.tasks:
        table = _qr_table(indexed, task)
        if table:
            sections += ["", f"## QR audit ({task})", "", table]
    sections += ["", "---", _footer(config, data), ""]
    path = config.reports_dir / config.name / "ablation.md"
    text = "\n".join(sections)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path

"""Markdown ablation report, built only from what the sweep logged to MLflow.

`reports/<sweep>/ablation.md`: the paper's Table-4 shape (one row per configuration, one column
per task plus the overall mean), each cell `mean ± 95% CI` (bootstrap over evaluation rows, and
across seeds when there are several), a per-language table with unseen languages marked, the QR
audit against injected-noise ground truth, and failures.
"""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from harness import __version__
from harness.cache import atomic_write
from harness.components import REGISTRY
from harness.config import SweepConfig
from harness.data.prepare import PreparedData
from harness.plan import Plan, models_of
from harness.record import TrialRecord
from harness.stats import pooled_bootstrap_interval


def make_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table."""
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|")
    lines = ["| " + " | ".join(map(cell, headers)) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def _label(configuration, task: str) -> str:
    return REGISTRY.label(configuration.effective(task))


def _task_labels(plan: Plan, task: str) -> list[str]:
    """The task's distinct effective configurations, in design order."""
    return list(dict.fromkeys(_label(c, task) for c in plan.configurations))


def _fmt(mean: float, low: float, high: float) -> str:
    half = max(high - mean, mean - low)
    return f"{mean:.4f} ± {half:.4f}"


def _mean(values: list[float]) -> str:
    values = [v for v in values if v is not None and not np.isnan(v)]
    return f"{np.mean(values):.3f}" if values else "–"


class _Records:
    """The plan's finished trials, looked up by (model, task, components label, held-out
    language); every table of a report reads through this one selection."""

    def __init__(self, records: list[TrialRecord], plan: Plan) -> None:
        self.plan = plan
        owned = [r for r in records if plan.owns(r)]
        self.all = owned
        self.finished = [r for r in owned if r.status == "FINISHED"]
        self.by_key = {r.key: r for r in self.finished}

    def planned(self, *, model: str, task: str, label: str,
                heldout: str | None = None) -> list[TrialRecord]:
        keys = [t.key for t in self.plan.trials if t.model == model and t.task == task
                and t.label == label and t.heldout_language == heldout]
        return [self.by_key[k] for k in keys if k in self.by_key]

    def cell(self, records: list[TrialRecord]) -> tuple[float, float, float] | None:
        """Mean F1 over the records (seeds) with its 95% interval, from their predictions."""
        if not records:
            return None
        return pooled_bootstrap_interval([r.predictions for r in records])


def _ablation_table(results: _Records, tasks: Sequence[str], model: str) -> str:
    headers = ["configuration", *tasks] + (["overall"] if len(tasks) > 1 else [])
    rows = []
    for configuration in results.plan.configurations:
        cells, means = [], []
        for task in tasks:
            value = results.cell(results.planned(model=model, task=task,
                                                 label=_label(configuration, task)))
            cells.append("–" if value is None else _fmt(*value))
            if value is not None:
                means.append(value[0])
        if len(tasks) > 1:
            cells.append(f"{np.mean(means):.4f}" if len(means) == len(tasks) else "–")
        rows.append([configuration.label, *cells])
    baseline_row = ["all-\"yes\" baseline"]
    for task in tasks:
        runs = [r for r in results.finished if r.task == task and r.model == model
                and r.heldout_language is None and r.role == "planned"]
        baseline_row.append(f"{runs[0].metrics['baseline_f1']:.4f}" if runs else "–")
    if len(tasks) > 1:
        baseline_row.append("")
    rows.append(baseline_row)
    return make_table(headers, rows)


def _language_table(results: _Records, model: str, task: str,
                    train_languages: Sequence[str]) -> str:
    runs_of_task = [r for r in results.finished if r.task == task and r.model == model
                    and r.role == "planned"]
    languages = sorted({k.split("/", 1)[1] for r in runs_of_task for k in r.metrics
                        if k.startswith("rows/")})
    if not languages:
        return ""
    headers = ["configuration"] + [f"{lang}{'' if lang in train_languages else ' *'}" for lang in languages]
    headers += ["seen", "unseen"]
    rows = []
    for label in _task_labels(results.plan, task):
        runs = results.planned(model=model, task=task, label=label)
        if runs:
            rows.append([label] + [_mean([r.metrics.get(c, np.nan) for r in runs])
                                   for c in [*(f"f1/{lang}" for lang in languages), "f1/seen", "f1/unseen"]])
    return make_table(headers, rows)


def _leave_language_out_table(results: _Records, model: str, task: str) -> str:
    """F1 on language L of a model trained without L, beside the seen-language F1 of the model
    trained on every language: the honest estimate of unseen-language F1 on real data."""
    languages = list(dict.fromkeys(t.heldout_language for t in results.plan.trials
                                   if t.task == task and t.model == model and t.heldout_language))
    if not languages:
        return ""
    rows = []
    for label in _task_labels(results.plan, task):
        full = results.planned(model=model, task=task, label=label)
        row = [label, _mean([r.metrics.get("f1/seen", np.nan) for r in full])]
        held = []
        for language in languages:
            values = [r.metrics["f1"] for r in results.planned(model=model, task=task, label=label,
                                                               heldout=language)]
            held += values
            row.append(_mean(values))
        row.append(_mean(held))
        rows.append(row)
    headers = ["configuration", "seen F1 (all languages trained)",
               *(f"{lang} held out" for lang in languages), "mean held out"]
    return make_table(headers, rows)


def _component_effects(results: _Records, model: str, tasks: Sequence[str]) -> str:
    """For each component: trials of this plan that differ only in it, side by side."""
    by_identity = {(t.task, t.components, t.seed, t.heldout_language): t.key
                   for t in results.plan.trials if t.model == model and t.key in results.by_key}
    lines = []
    for component in REGISTRY:
        for task in tasks:
            pairs = []
            for (t, components, seed, heldout), key in by_identity.items():
                if t != task or component.name not in components:
                    continue
                without = tuple(c for c in components if c != component.name)
                other = by_identity.get((task, without, seed, heldout))
                if other is not None:
                    on, off = results.by_key[key].metrics, results.by_key[other].metrics
                    pairs.append((off.get("f1", np.nan), on.get("f1", np.nan),
                                  REGISTRY.label(without)))
            if pairs:
                compared = "; ".join(f"{label} {off:.4f} -> {on:.4f}" for off, on, label in pairs)
                lines.append(f"- {component.name} on {task}: mean F1 without "
                             f"{np.mean([p[0] for p in pairs]):.4f}, with "
                             f"{np.mean([p[1] for p in pairs]):.4f} (trials differing only in "
                             f"{component.name}: {compared}). Point estimates only: no verdict.")
    return "\n".join(lines)


def _search_table(results: _Records, task: str, *, top: int = 5) -> str:
    """The best trials of an Optuna search of this plan, best first (search-split F1)."""
    runs = [r for r in results.all if r.task == task and r.role == "search"]
    if not runs:
        return ""
    knobs = sorted({k for r in runs for k in r.params if k.startswith("components.QR.thresholds.")
                    or k in _searched_paths(results)})
    complete = sorted((r for r in runs if r.status == "FINISHED"),
                      key=lambda r: r.metrics.get("f1", 0.0), reverse=True)[:top]
    rows = [[f"{r.metrics['f1']:.4f}", f"{r.metrics.get('qr/removed_fraction', float('nan')):.1%}",
             ", ".join(f"{k.removeprefix('components.')}={r.params[k]}" for k in knobs if k in r.params)]
            for r in complete]
    pruned = sum(r.pruned for r in runs)
    best = [r for r in results.finished if r.task == task and "search best" in r.rows]
    chosen = (f"\n\nThe chosen configuration, trained on all training rows and scored once on "
              f"the {best[0].eval_split} rows: F1 {best[0].metrics['f1']:.4f}." if best else "")
    return (f"{len(runs)} search trials ({pruned} pruned), scored on a search split of the training "
            f"rows; the best {len(rows)}:\n\n"
            + make_table(["search F1", "QR removed", "knobs"], rows) + chosen)


def _searched_paths(results: _Records) -> set[str]:
    config = results.plan.trials[0].config if results.plan.trials else None
    return set(config.design.optuna.params) if config is not None else set()


def footer(data: PreparedData) -> str:
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


def make_report(config: SweepConfig, *, plan: Plan, records: list[TrialRecord],
                train_languages: dict[str, list[str]], data_source: str,
                footer_text: str = "") -> str:
    """The markdown report of `plan` from its trial records (a pure function: no MLflow, no
    torch). Records of other plans are ignored; planned records need their predictions."""
    results = _Records(records, plan)
    eval_names = sorted({r.eval_split for r in results.finished if r.role == "planned"})
    tasks = list(plan.tasks or config.tasks)
    sections = [
        f"# Ablation report: {config.name}",
        "",
        f"Design **{config.design.kind}** over {', '.join(config.design.switches) or 'no switches'}"
        + (f" (always on: {', '.join(config.design.always_on)})" if config.design.always_on else "")
        + f"; seeds {config.seeds}; data: {data_source}; evaluated on {', '.join(eval_names)}. "
        "Cells are F1 of the positive class, `mean ± half-width of the 95% CI` (bootstrap over "
        "evaluation rows, combined with the spread across seeds). Components that do not apply to "
        "a task are ignored for that task, so such rows repeat a trial.",
    ]
    for model in models_of(config):
        sections += ["", f"## Model `{model}`", "", _ablation_table(results, tasks, model)]
        effects = _component_effects(results, model, tasks)
        if effects:
            sections += ["", "### Trials that differ in one component", "", effects]
        for task in tasks:
            table = _language_table(results, model, task, train_languages.get(task, []))
            if table:
                sections += ["", f"### {task} F1 per language (`*` = not in the training data)",
                             "", table]
            table = _leave_language_out_table(results, model, task)
            if table:
                sections += ["", f"### {task} leave-language-out: F1 on a language the model "
                             "was trained without", "", table]
    for task in tasks:
        table = _search_table(results, task)
        if table:
            sections += ["", f"## Optuna search ({task})", "", table]
    for component in REGISTRY:
        for title, text in component.report_sections(results.finished, plan):
            sections += ["", f"## {title}", "", text]
    sections += ["", "---", footer_text, ""]
    return "\n".join(sections)


def write_report(config: SweepConfig, *, plan: Plan, records: list[TrialRecord],
                 data: PreparedData) -> Path:
    """Write `reports/<sweep>/ablation.md` and return its path."""
    train_languages = {task: sorted(data.tasks[task].train.frame["language"].unique())
                       for task in data.tasks}
    text = make_report(config, plan=plan, records=records, train_languages=train_languages,
                       data_source=data.source, footer_text=footer(data))
    path = config.reports_dir / config.name / "ablation.md"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    os.chmod(path, 0o644)
    return path

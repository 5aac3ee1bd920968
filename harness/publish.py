"""Everything a sweep leaves in `reports/<sweep>/`, from its trial records alone: the markdown
report with its plots, the main table as CSV (and JSON / LaTeX on request), and the submission
files. `sweep` and `harness report` both call `write_report`, so a report rebuilt from MLflow
is the report the sweep wrote (the footer's "generated" time aside)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from harness import __version__, plots
from harness.cache import atomic_write, stable_hash
from harness.config import SweepConfig
from harness.data.prepare import PreparedData
from harness.plan import Plan, models_of
from harness.record import TrialRecord
from harness.report import (
    Results,
    ablation_frame,
    ablation_table,
    make_report,
    make_table,
    task_labels,
)
from harness.secrets import masked_json
from harness.submit import LoadFrame, Submission, SubmissionError, write_submissions

FORMATS = ("md", "csv", "json", "latex")
EXTENSIONS = {"csv": "csv", "json": "json", "latex": "tex"}
LoadHistory = Callable[[str, str], list[float]]  # (run id, metric) -> values by step


@dataclass
class ReportFiles:
    markdown: Path
    files: list[Path] = field(default_factory=list)  # tables and plots beside it
    headline: str = ""  # the main table of the first model, for the terminal
    tables: pd.DataFrame | None = None  # every model's main table (the CSV)
    submissions: list[Submission] = field(default_factory=list)
    archives: list[Path] = field(default_factory=list)
    submission_problem: str | None = None  # why no submission files were written


def machine() -> str:
    """One line about this machine: platform, CPU cores, GPU."""
    import torch

    gpu = (f", {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
           if torch.cuda.is_available() else ", no GPU")
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores{gpu}"


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=False,
                              timeout=5, cwd=Path(__file__).parent).stdout.strip()
    try:
        commit = git("rev-parse", "--short", "HEAD") or "unknown"
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}{' + uncommitted changes' if dirty else ''}"


def footer(config: SweepConfig, data: PreparedData, records: Sequence[TrialRecord]) -> str:
    import optuna
    import peft
    import torch
    import transformers

    fingerprints = ", ".join(f"{t} {f[:12]}" for t, f in data.fingerprints.items())
    machines = sorted({r.machine for r in records if r.machine}) or ["not recorded"]
    return (f"Config hash {stable_hash(masked_json(config))[:12]}; data fingerprints: "
            f"{fingerprints}; harness {__version__} (commit {_commit()}), Python "
            f"{platform.python_version()}, torch {torch.__version__}, transformers "
            f"{transformers.__version__}, peft {peft.__version__}, optuna {optuna.__version__}; "
            f"trials ran on: {'; '.join(machines)}; "
            f"generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}.")


def _tasks(plan: Plan, config: SweepConfig) -> list[str]:
    return list(plan.tasks or config.tasks)


def _effects(results: Results, model: str) -> pd.DataFrame:
    rows = [{"name": f"{c.task}: {c.name}", "delta": c.result.difference, "low": c.result.low,
             "high": c.result.high, "significant": bool(c.significant)}
            for c in results.contrasts(model) if c.result is not None and c.result.n_seeds > 1]
    return pd.DataFrame(rows)


def _language_f1(results: Results, model: str, task: str) -> pd.DataFrame:
    """Mean over seeds of the logged per-language F1 (`f1/<lang>`), configurations × languages."""
    rows = {}
    for label in task_labels(results.plan, task):  # design order, as in the tables
        runs = results.planned(model=model, task=task, label=label)
        values = pd.DataFrame([{k.split("/", 1)[1]: v for k, v in r.metrics.items()
                                if k.startswith("f1/") and k not in ("f1/seen", "f1/unseen")}
                               for r in runs])
        if runs and not values.empty:
            rows[label] = values.mean()
    return pd.DataFrame(rows).T.sort_index(axis=1) if rows else pd.DataFrame()


def _figures(results: Results, config: SweepConfig, folder: Path, *, plan: Plan,
             train_languages: dict[str, list[str]],
             load_history: LoadHistory | None) -> tuple[dict[str, list[tuple[str, str]]], list[Path]]:
    figures: dict[str, list[tuple[str, str]]] = {}
    written: list[Path] = []
    tasks = _tasks(plan, config)
    many = len(models_of(config)) > 1

    def add(model: str, caption: str, name: str, figure) -> None:  # noqa: ANN001 - a Figure
        path = plots.save(figure, folder / "plots" / (f"{model}-{name}" if many else name))
        written.append(path)
        figures.setdefault(model, []).append((caption, path.relative_to(folder).as_posix()))

    for model in models_of(config):
        for task in tasks:
            f1 = _language_f1(results, model, task)
            if not f1.empty:
                unseen = set(f1.columns) - set(train_languages.get(task, []))
                add(model, f"{task} F1 per language", f"{task}-languages.png",
                    plots.language_heatmap(f1, unseen=unseen, title=f"{task} F1 per language"))
        effects = _effects(results, model)
        if not effects.empty:
            add(model, "Paired differences with 95% CIs", "effects.png",
                plots.effects_plot(effects, title="Which component helps: paired Δ F1"))
        table = ablation_frame(results, tasks, model)
        score = "overall" if "overall" in table else tasks[0]
        table = table.assign(seconds=table[[f"{t}_seconds" for t in tasks]].sum(axis=1, min_count=1))
        if table[score].notna().sum() >= 2:
            add(model, "F1 against cost", "cost.png",
                plots.cost_plot(table, score=score, title=f"F1 ({score}) against cost"))
        if load_history is not None:
            curves = {r.name: load_history(r.run_id, "train_loss_epoch")
                      for r in sorted(results.finished, key=lambda r: r.name)
                      if r.model == model and r.role == "planned" and r.heldout_language is None}
            curves = {name: values for name, values in curves.items() if values}
            if curves:
                add(model, "Training loss per epoch", "loss.png",
                    plots.loss_curves(curves, title="Training loss per epoch"))
    return figures, written


def _export(tables: pd.DataFrame, folder: Path, formats: Sequence[str]) -> list[Path]:
    """`ablation.csv` / `.json` / `.tex`: the main table in each format asked for."""
    written = []
    for fmt in formats:
        path = folder / f"ablation.{EXTENSIONS[fmt]}"
        text = print_table(tables, fmt)
        atomic_write(path, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
        path.chmod(0o644)
        written.append(path)
    return written


def latex_table(tables: pd.DataFrame) -> str:
    """The main table as a LaTeX tabular: `F1 [low, high]` per task (and overall)."""
    scores = [c for c in tables.columns if f"{c}_low" in tables.columns]
    shown = pd.DataFrame({"model": tables["model"], "configuration": tables["configuration"]})
    for column in scores:
        shown[column] = [("–" if np.isnan(v) else f"{v:.3f} [{lo:.3f}, {hi:.3f}]")
                         for v, lo, hi in zip(tables[column], tables[f"{column}_low"],
                                              tables[f"{column}_high"], strict=True)]
    return shown.to_latex(index=False, escape=True)


def print_table(tables: pd.DataFrame, fmt: str) -> str:
    """The main table in the requested format, as `harness report --format` prints it."""
    if fmt == "csv":
        return tables.to_csv(index=False, float_format="%.6f")
    if fmt == "json":
        return json.dumps(json.loads(tables.to_json(orient="records", double_precision=6)),
                          indent=2, ensure_ascii=False) + "\n"
    if fmt == "latex":
        return latex_table(tables)
    return make_table(list(tables.columns), tables.round(3).astype(str).values.tolist())


def write_report(config: SweepConfig, *, plan: Plan, records: list[TrialRecord],
                 data: PreparedData, load_history: LoadHistory | None = None,
                 load_frame: LoadFrame | None = None, exports: Sequence[str] = ("csv",),
                 submit_keys: Sequence[str] = ()) -> ReportFiles:
    """Write the report folder; returns what was written. `exports`: the main table's formats
    beside ablation.md (csv, json, latex). Submissions need `load_frame`."""
    folder = config.reports_dir / config.name
    folder.mkdir(parents=True, exist_ok=True)
    results = Results(records, plan)
    train_languages = {task: sorted(data.tasks[task].train.frame["language"].unique())
                       for task in data.tasks}
    figures, files = _figures(results, config, folder, plan=plan, train_languages=train_languages,
                              load_history=load_history)
    text = make_report(config, plan=plan, records=records, train_languages=train_languages,
                       data_source=data.source, footer_text=footer(config, data, results.finished),
                       results=results, figures=figures)
    path = folder / "ablation.md"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    path.chmod(0o644)
    tasks = _tasks(plan, config)
    tables = pd.concat([ablation_frame(results, tasks, m) for m in models_of(config)],
                       ignore_index=True)
    files += _export(tables, folder, exports)
    submissions, archives, problem = [], [], None
    if load_frame is not None:
        try:
            submissions, archives = write_submissions(config, records=results.finished, data=data,
                                                      load_frame=load_frame,
                                                      trial_keys=list(submit_keys))
        except SubmissionError as error:  # the report stands; the caller says what is missing
            problem = str(error)
    headline = ablation_table(results, tasks, models_of(config)[0])
    return ReportFiles(markdown=path, files=files, headline=headline, tables=tables,
                       submissions=submissions, archives=archives, submission_problem=problem)


__all__ = ["FORMATS", "ReportFiles", "footer", "machine", "print_table",
           "write_report"]

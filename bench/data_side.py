"""Everything but the model, at the real size: seconds and peak memory of each data stage.

The built-in benchmark at full scale (`data synth --scale full`: train QC 300,000 rows, QI
340,000; dev and test 100,000 and 65,000) goes through what a paper-scale trial does before its
first forward pass, with every data component on: loading and validation, the grouped holdout
split, QR (lexical signals, per-language thresholds, flags; its checker model is model time),
TR, LT, HCT / SIT, DG (offline generators), ICL retrieval of similar training rows, prompt
building (with CoT cues) and tokenisation. Each stage runs through the harness's own `Stages`
with a fresh stage cache, as in a sweep's first trial. Peak memory is the process's resident
high-water mark (`VmHWM`), reset before each stage; the run fails if a stage's outputs differ
in length from its inputs. Writes bench/results/data_side.md.

    python bench/data_side.py [--scale full] [--tasks QC QI]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import yaml

from harness.cache import StageCache
from harness.config import SweepConfig, with_data_dir
from harness.data import split_file_name
from harness.data.prepare import ensure_synth, prepare_data
from harness.learner.model import LoadedModel, load_base_model
from harness.learner.score import encode_prompts
from harness.plan import resolve_trial
from harness.stages import Stages

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
COMPONENTS = {"QC": ("QR", "TR", "LT", "HCT", "ICL", "CoT"),
              "QI": ("QR", "TR", "LT", "SIT", "DG", "ICL", "CoT")}
GOAL_SECONDS, GOAL_GIB = 600, 8.0


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM back to the current RSS


class Meter:
    """Wall seconds and peak RSS of each measured step, in order."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.notes: list[str] = []

    def step(self, task: str, stage: str, rows: int | Callable[[object], int],
             fn: Callable[[], object]) -> object:
        """Run fn, timed; `rows` is the row count, or a function of fn's output giving it."""
        _reset_peak()
        started = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - started
        rows = rows(out) if callable(rows) else rows
        self.rows.append({"task": task, "stage": stage, "rows": rows, "seconds": seconds,
                          "peak_gib": _status_kib("VmHWM") / 2**20})
        print(f"  {task:>3} {stage:<28} {rows:>9,} rows {seconds:8.1f} s  "
              f"peak {self.rows[-1]['peak_gib']:.2f} GiB", flush=True)
        return out


def sweep_config(scale: str, workdir: Path) -> SweepConfig:
    raw = yaml.safe_load((ROOT / "ablations.yaml").read_text())
    raw["data"]["synth"]["scale"] = scale
    raw["cache_dir"] = str(workdir / "cache")
    raw["tracking"] = {"uri": f"file://{workdir}/mlruns"}
    raw.pop("study", None)
    return SweepConfig.model_validate(raw)


def competition_copy(source: Path, target: Path) -> Path:
    """The benchmark as the competition ships it: labelled train files, dev and test without
    labels (so the evaluation rows are a grouped holdout of train, and dev and test are the
    splits a submission predicts)."""
    target.mkdir(parents=True, exist_ok=True)
    for task in ("QC", "QI"):
        shutil.copyfile(source / split_file_name("train", task), target / split_file_name("train", task))
        for split in ("dev", "test"):
            frame = pd.read_json(source / split_file_name(split, task), lines=True, dtype=False)
            frame.drop(columns=["label"], errors="ignore").to_json(
                target / split_file_name(split, task), orient="records", lines=True,
                force_ascii=False)
    return target


def run_task(task: str, config: SweepConfig, data, stages: Stages, loaded: LoadedModel,
             meter: Meter) -> None:
    spec = resolve_trial(config, task=task, components=COMPONENTS[task], seed=0,
                         model=config.model.name, fingerprints=data.fingerprints)
    task_data = data.tasks[task]
    sets = meter.step(task, "evaluation rows (holdout)", len(task_data.train.frame),
                      lambda: stages.evaluation_sets(task_data))
    kept, _ = meter.step(task, "QR (lexical)", len(sets.train),
                         lambda: stages.refine(sets.train, spec))
    train_text = meter.step(task, "text components (train)", len(kept),
                            lambda: stages.text_columns(kept, spec))
    eval_text = meter.step(task, "text components (eval)", len(sets.evaluation),
                           lambda: stages.text_columns(sets.evaluation, spec))
    before = dict(stages.seconds)
    train_prompts = meter.step(task, "ICL + prompts (train)", len(train_text),
                               lambda: stages.prompts(train_text, spec, pool=train_text,
                                                      same_rows=True))
    eval_prompts = meter.step(task, "ICL + prompts (eval)", len(eval_text),
                              lambda: stages.prompts(eval_text, spec, pool=train_text))
    max_length = config.training.max_length
    train_ids, _ = meter.step(task, "tokenise (train)", len(train_prompts),
                              lambda: encode_prompts(loaded, train_prompts, max_length=max_length))
    eval_ids, _ = meter.step(task, "tokenise (eval)", len(eval_prompts),
                             lambda: encode_prompts(loaded, eval_prompts, max_length=max_length))
    assert len(train_ids) == len(train_text) and len(eval_ids) == len(eval_text)
    tokens = sum(map(len, train_ids)) + sum(map(len, eval_ids))
    for split, frame in sets.unlabelled.items():   # the splits a submission predicts
        text = meter.step(task, f"text components ({split})", len(frame),
                          lambda frame=frame: stages.text_columns(frame, spec))
        split_prompts = meter.step(task, f"ICL + prompts ({split})", len(text),
                                   lambda text=text: stages.prompts(text, spec, pool=train_text))
        ids, _ = meter.step(task, f"tokenise ({split})", len(split_prompts),
                            lambda p=split_prompts: encode_prompts(loaded, p, max_length=max_length))
        assert len(ids) == len(frame)
        tokens += sum(map(len, ids))
    icl = stages.seconds["ICL"] - before.get("ICL", 0.0)
    meter.notes.append(f"{task}: {tokens:,} prompt tokens; ICL retrieval took {icl:.1f} s of the "
                       "ICL + prompts rows.")
    print("  " + meter.notes[-1], flush=True)


def write_table(meter: Meter, *, command: str, scale: str, total: float, peak: float) -> Path:
    frame = pd.DataFrame(meter.rows)
    lines = ["# The data side of a trial at full scale: every stage but the model", "",
             f"`{command}` on {platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, "
             f"pandas {pd.__version__}, {datetime.now(UTC):%Y-%m-%d}: the built-in benchmark at "
             f"scale {scale}, every data component on (QC: {', '.join(COMPONENTS['QC'])}; QI: "
             f"{', '.join(COMPONENTS['QI'])}), a fresh stage cache, the built-in tokenizer. "
             "Peak is the process's resident high-water mark during the stage.", "",
             "| task | stage | rows | seconds | peak GiB |", "|---|---|---|---|---|"]
    for row in frame.itertuples():
        rows = f"{row.rows:,}" if row.rows else "—"
        lines.append(f"| {row.task} | {row.stage} | {rows} | {row.seconds:.1f} | "
                     f"{row.peak_gib:.2f} |")
    shared = frame[frame["task"] == "all"]
    per_trial = [f"{task} trial: **{(shared['seconds'].sum() + part['seconds'].sum()) / 60:.1f} min**, "
                 f"peak {max(shared['peak_gib'].max(), part['peak_gib'].max()):.2f} GiB"
                 for task, part in frame[frame["task"] != "all"].groupby("task", sort=False)]
    lines += ["", *meter.notes, "",
              "The data side of one trial (loading and the tokenizer counted in each): "
              + "; ".join(per_trial) + f" (goal: under {GOAL_SECONDS // 60} min and "
              f"{GOAL_GIB:.0f} GiB). Both tasks in one process, generation excluded: "
              f"{total / 60:.1f} min, peak {peak:.2f} GiB."]
    path = ROOT / "bench" / "results" / "data_side.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", default="full", choices=["small", "medium", "full"])
    parser.add_argument("--tasks", nargs="+", default=["QC", "QI"], choices=["QC", "QI"])
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the generated benchmark here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        config = sweep_config(args.scale, workdir)
        print(f"generating the built-in benchmark at scale {args.scale} (not timed) ...", flush=True)
        config = with_data_dir(config, competition_copy(ensure_synth(config), workdir / "competition"))
        for cached in (workdir / "cache" / "stages", workdir / "models"):  # measure a first trial
            shutil.rmtree(cached, ignore_errors=True)
        meter = Meter()
        started = time.perf_counter()
        data = meter.step("all", "load and validate", lambda data: sum(
            len(s.frame) for t in data.tasks.values() for s in (t.train, t.dev, t.test)
            if s is not None), lambda: prepare_data(config))
        loaded = meter.step("all", "train the tokenizer", 0, lambda: load_base_model(
            model=config.model, corpus=data.corpus(), cache_dir=workdir / "models"))
        stages = Stages(config=config, cache=StageCache(workdir / "cache" / "stages"), data=data)
        for task in args.tasks:
            run_task(task, config, data, stages, loaded, meter)
        total = time.perf_counter() - started
        peak = max(r["peak_gib"] for r in meter.rows)
    command = "python bench/data_side.py" + (f" --scale {args.scale}" if args.scale != "full" else "")
    path = write_table(meter, command=command, scale=args.scale, total=total, peak=peak)
    print(f"total {total / 60:.1f} min, peak {peak:.2f} GiB; wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

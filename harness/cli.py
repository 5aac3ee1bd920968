"""`python -m harness sweep|worker|report|data|qr|tag ...`"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.errors import HarnessError
from harness.secrets import mask

TASK_CHOICES = ("QC", "QI")


def _run_sweep(args: argparse.Namespace, **options: object) -> int:
    from harness.config import load_config, with_data_dir
    from harness.sweep import run_sweep

    config = load_config(args.config)
    if args.data is not None:
        config = with_data_dir(config, args.data)
    if "workers" in options:
        options["workers"] = options["workers"] or config.study.workers
    try:
        summary = run_sweep(config, storage=args.storage, progress=not args.no_progress, **options)
    except KeyboardInterrupt:
        return 130
    return 1 if summary.failed else 0


def _sweep(args: argparse.Namespace) -> int:
    return _run_sweep(args, dry_run=args.dry_run, retry_failed=args.retry_failed,
                      workers=args.workers)


def _worker(args: argparse.Namespace) -> int:
    return _run_sweep(args, report=False)


def _report(args: argparse.Namespace) -> int:
    from harness.compare import load_sweep
    from harness.publish import print_table, write_report
    from harness.submit import SubmissionError

    sweep = load_sweep(args.config, args.data)
    files = write_report(sweep.config, plan=sweep.plan, records=sweep.records, data=sweep.data,
                         load_history=sweep.tracker.metric_history,
                         load_frame=sweep.tracker.load_frame,
                         exports=sorted({"csv", args.format} - {"md"}),
                         submit_keys=args.submit or ())
    if files.submission_problem:
        raise SubmissionError(files.submission_problem)
    print(files.headline if args.format == "md" else print_table(files.tables, args.format))
    for submission in files.submissions:
        print(submission.describe())
    for archive in files.archives:
        print(f"Submission archive: {archive}")
    print(f"Report: {files.markdown}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from harness.compare import compare_sweeps, load_sweep

    print(compare_sweeps(load_sweep(args.a, args.data_a), load_sweep(args.b, args.data_b)))
    return 0


def _synth(args: argparse.Namespace) -> int:
    from harness.data.synth import generate

    noise: float | dict[str, float] = args.noise
    summary = generate(Path(args.out), seed=args.seed, scale=args.scale, noise=noise)
    print(summary.describe())
    return 0


def _check(args: argparse.Namespace) -> int:
    from harness.data import SPLITS, split_file_name
    from harness.data.check import check_directory

    directory = Path(args.dir)
    # Default: every task with any of its files in DIR, so that dev/test without train is an error.
    tasks = args.tasks or [t for t in TASK_CHOICES
                           if any((directory / split_file_name(s, t)).exists() for s in SPLITS)]
    if not directory.is_dir():
        raise HarnessError(f"{directory}: no such directory")
    if not tasks:
        raise HarnessError(f"{directory}: no train_QC.txt or train_QI.txt (expected the competition "
                           "files train_QC.txt, dev_QC.txt, test_QC.txt, train_QI.txt, ...)")
    report = check_directory(directory, tasks=tuple(tasks), strict=args.strict)
    print(report.render())
    return 0


def _qr(args: argparse.Namespace) -> int:
    from harness.commands import qr_command

    return qr_command(task=args.task, input_path=Path(args.input), output_path=Path(args.output),
                      pred_path=Path(args.pred) if args.pred else None, mode=args.mode,
                      audit_path=Path(args.audit) if args.audit else None)


def _tag(args: argparse.Namespace) -> int:
    from harness.commands import tag_command, text_components

    chosen = [c.name for c in text_components() if getattr(args, c.name.lower())]
    return tag_command(task=args.task, input_path=Path(args.input), output_path=Path(args.output),
                       components=chosen, config_path=args.config, settings=args.set or [],
                       qc_train=Path(args.qc_train) if args.qc_train else None)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: expected a whole number of at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    from harness.commands import text_components

    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description="Ablation studies of LLM relevance pipelines: "
                    "one YAML file -> trials -> MLflow -> a markdown ablation report.")
    commands = parser.add_subparsers(dest="command", required=True)

    sweep = commands.add_parser("sweep", help="run (or resume) the sweep a YAML file describes")
    sweep.add_argument("config", type=Path)
    sweep.add_argument("--data", type=Path, help="competition-format files to use instead of the YAML's data")
    sweep.add_argument("--dry-run", action="store_true", help="print the trial plan; run nothing")
    sweep.add_argument("--retry-failed", action="store_true", help="rerun trials that failed before")
    sweep.add_argument("--storage", help="Optuna storage URL (default: a SQLite file under .harness/)")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bars")
    sweep.add_argument("--workers", type=_positive, help="local worker processes, this one "
                       "included (default: study.workers, 1); one GPU each where there are GPUs")
    sweep.set_defaults(run=_sweep)

    worker = commands.add_parser("worker", help="join a sweep from any machine: run its waiting "
                                 "trials until none is waiting or running (no report)")
    worker.add_argument("config", type=Path)
    worker.add_argument("--data", type=Path, help="the competition-format files the sweep uses")
    worker.add_argument("--storage", help="the sweep's Optuna storage URL (postgresql://...)")
    worker.add_argument("--no-progress", action="store_true", help="no progress bars")
    worker.set_defaults(run=_worker)

    report = commands.add_parser("report", help="rewrite reports/<sweep>/ (report, plots, "
                                 "tables, submissions) from MLflow")
    report.add_argument("config", type=Path)
    report.add_argument("--data", type=Path, help="the competition-format files the sweep ran on "
                        "(as given to `sweep --data`)")
    report.add_argument("--format", choices=("md", "csv", "json", "latex"), default="md",
                        help="print the main table in this format (and write ablation.<ext>; "
                        "ablation.md and ablation.csv are always written)")
    report.add_argument("--submit", nargs="+", metavar="TRIAL_KEY",
                        help="submit these trials' predictions (one key or unique key prefix "
                        "per task) instead of the best configuration's")
    report.set_defaults(run=_report)

    compare = commands.add_parser("compare", help="two finished sweeps side by side, with paired "
                                  "differences where they scored the same evaluation rows")
    compare.add_argument("a", type=Path, help="sweep A's YAML")
    compare.add_argument("b", type=Path, help="sweep B's YAML")
    compare.add_argument("--data-a", type=Path, help="sweep A's --data directory, if it had one")
    compare.add_argument("--data-b", type=Path, help="sweep B's --data directory, if it had one")
    compare.set_defaults(run=_compare)

    data = commands.add_parser("data", help="generate or check competition-format data")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    synth = data_commands.add_parser("synth", help="write the built-in benchmark (all six files)")
    synth.add_argument("--out", required=True)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--scale", choices=("tiny", "small", "medium", "full"), default="small")
    synth.add_argument("--noise", type=float, default=0.08, help="train label-noise rate (default 0.08)")
    synth.set_defaults(run=_synth)
    check = data_commands.add_parser("check", help="validate a data directory and summarise it")
    check.add_argument("dir")
    check.add_argument("--tasks", nargs="+", choices=TASK_CHOICES,
                       help="tasks to check (default: those with a train file in DIR)")
    check.add_argument("--strict", action="store_true", help="empty queries/targets are errors")
    check.set_defaults(run=_check)

    qr = commands.add_parser("qr", help="quality refinement of one training file")
    qr.add_argument("--task", choices=TASK_CHOICES, required=True)
    qr.add_argument("--input", required=True)
    qr.add_argument("--output", required=True)
    qr.add_argument("--pred", help="checker predictions (JSON Lines: id, p_yes and/or prediction)")
    qr.add_argument("--mode", choices=("default", "reference"), default="default")
    qr.add_argument("--audit", help="write the per-row audit table (CSV) here")
    qr.set_defaults(run=_qr)

    tag = commands.add_parser("tag", help="add tagged query/target fields to a file")
    tag.add_argument("--task", choices=TASK_CHOICES, required=True)
    tag.add_argument("--input", required=True)
    tag.add_argument("--output", required=True)
    for component in text_components():
        tasks = "" if len(component.tasks) > 1 else f" ({'/'.join(component.tasks)})"
        tag.add_argument(f"--{component.name.lower()}", action="store_true",
                         help=f"{component.description}{tasks}")
    tag.add_argument("--config", type=Path, help="take component settings from this sweep YAML")
    tag.add_argument("--set", action="append", metavar="PATH=VALUE",
                     help="change one setting, e.g. components.HCT.split=reference (repeatable)")
    tag.add_argument("--qc-train", help="QC training file for SIT's QC leaf (default: "
                     "train_QC.txt beside the input)")
    tag.set_defaults(run=_tag)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except HarnessError as error:
        print(f"error: {mask(str(error))}", file=sys.stderr)
        return error.exit_code

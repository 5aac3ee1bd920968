"""`python -m harness sweep|report|data|qr|tag ...`"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.errors import HarnessError

TASK_CHOICES = ("QC", "QI")


def _sweep(args: argparse.Namespace) -> int:
    from harness.config import load_config, with_data_dir
    from harness.sweep import run_sweep

    config = load_config(args.config)
    if args.data is not None:
        config = with_data_dir(config, args.data)
    try:
        summary = run_sweep(config, dry_run=args.dry_run, retry_failed=args.retry_failed,
                            storage=args.storage, progress=not args.no_progress)
    except KeyboardInterrupt:
        return 130
    return 1 if summary.failed else 0


def _report(args: argparse.Namespace) -> int:
    from harness.config import load_config
    from harness.data.prepare import prepare_data
    from harness.plan import build_plan
    from harness.report import write_report
    from harness.tracking import Tracker, resolve_tracking_uri, trial_results

    config = load_config(args.config)
    data = prepare_data(config)
    tracker = Tracker(uri=resolve_tracking_uri(config.tracking.uri),
                      experiment=config.tracking.experiment or config.name)
    results = trial_results(tracker, config.name)
    if not len(results):
        raise HarnessError(f"no finished trials of sweep '{config.name}' in MLflow ({tracker.uri})")
    path = write_report(config, plan=build_plan(config, data_fingerprints=data.fingerprints),
                        results=results, tracker=tracker, data=data)
    print(f"Report: {path}")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from harness.data.synth import generate

    noise: float | dict[str, float] = args.noise
    summary = generate(Path(args.out), seed=args.seed, scale=args.scale, noise=noise)
    print(summary.describe())
    return 0


def _check(args: argparse.Namespace) -> int:
    from harness.data import split_file_name
    from harness.data.check import check_directory

    directory = Path(args.dir)
    tasks = args.tasks or [t for t in TASK_CHOICES if (directory / split_file_name("train", t)).exists()]
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
    from harness.commands import tag_command

    return tag_command(task=args.task, input_path=Path(args.input), output_path=Path(args.output),
                       lt=args.lt, hct=args.hct, sit=args.sit, dg=args.dg, hct_split=args.hct_split)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description="Ablation studies of LLM relevance pipelines (QR, LT, HCT, SIT, DG, ICL, CoT).")
    commands = parser.add_subparsers(dest="command", required=True)

    sweep = commands.add_parser("sweep", help="run (or resume) the sweep a YAML file describes")
    sweep.add_argument("config", type=Path)
    sweep.add_argument("--data", type=Path, help="competition-format files to use instead of the YAML's data")
    sweep.add_argument("--dry-run", action="store_true", help="print the trial plan; run nothing")
    sweep.add_argument("--retry-failed", action="store_true", help="rerun trials that failed before")
    sweep.add_argument("--storage", help="Optuna storage URL (default: a SQLite file under .harness/)")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bars")
    sweep.set_defaults(run=_sweep)

    report = commands.add_parser("report", help="rewrite reports/<sweep>/ablation.md from MLflow")
    report.add_argument("config", type=Path)
    report.set_defaults(run=_report)

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
    tag.add_argument("--lt", action="store_true", help="language tagging")
    tag.add_argument("--hct", action="store_true", help="hierarchical category tagging (QC)")
    tag.add_argument("--hct-split", choices=("smart", "reference"), default="smart")
    tag.add_argument("--sit", action="store_true", help="semantic item tagging (QI)")
    tag.add_argument("--dg", action="store_true", help="description generation, offline generator (QI)")
    tag.set_defaults(run=_tag)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code

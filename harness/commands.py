"""Stage commands: run one component on one competition-format file, the way users of the
reference scripts run one stage at a time. Same validation and errors as the sweep's loader."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from harness.components import REGISTRY, Component
from harness.data import split_file_name, target_column
from harness.data.loader import TaskData, format_dropped, read_split, write_jsonl
from harness.errors import DataError, HarnessError


def _read(path: Path, task: str, split: str) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    loaded = read_split(path, task=task, split=split)
    if loaded.dropped:
        print(f"{path}: dropped {format_dropped(loaded.dropped)}")
    if loaded.frame.empty:
        raise DataError(f"{path}: no rows to process")
    return loaded.frame


def qr_command(*, task: str, input_path: Path, output_path: Path, pred_path: Path | None,
               mode: str, audit_path: Path | None) -> int:
    """Write the training rows QR keeps; optionally the audit table with every signal."""
    from harness.components import qr

    rows = _read(input_path, task, "train")
    if rows["label"].isna().any():
        line = int(rows.index[rows["label"].isna()][0]) + 1
        raise DataError("QR refines labelled training rows only; this row has no label",
                        path=input_path, line=line, field="label")
    p_yes = prediction = None
    if pred_path is not None:
        p_yes, prediction = qr.align_predictions(rows, qr.read_predictions(pred_path))
    config = qr.QRConfig(mode=mode, use_model=pred_path is not None)
    result = qr.refine(rows, task=task, config=config, p_yes=p_yes, prediction=prediction)
    write_jsonl(result.kept, output_path)
    if audit_path is not None:
        audit_path.parent.mkdir(parents=True, exist_ok=True)
        result.audit.to_csv(audit_path, index=False)
    flagged = result.audit["flagged"]
    print(f"QR ({mode}): kept {len(result.kept)} of {len(rows)} rows, removed {int(flagged.sum())} "
          f"-> {output_path}")
    for language, group in result.audit.groupby("language"):
        print(f"  {language}: removed {int(group['flagged'].sum())} of {len(group)}")
    return 0


def text_components(task: str | None = None) -> list[Component]:
    """The text-stage components (query and target), optionally only those of `task`."""
    return [c for c in REGISTRY if c.stage in ("query", "target")
            and (task is None or c.applies_to(task))]


def tag_command(*, task: str, input_path: Path, output_path: Path, components: list[str],
                config_path: Path | None = None, settings: list[str] = (),
                qc_train: Path | None = None, cache_dir: Path | None = None) -> int:
    """Add `tagged_query` and `tagged_<target>` fields; original fields are kept.

    The text is built by the same stages, with the same settings, as a sweep's trials: the
    component settings come from `config_path` (a sweep YAML) or the defaults, changed by
    `settings` (`PATH=VALUE`, e.g. `components.HCT.split=reference`). SIT's QC leaf comes from
    `qc_train`, else `train_QC.txt` beside the input file (as in a sweep over that directory).
    """
    from harness.cache import StageCache
    from harness.config import apply_overrides, load_config, parse_config
    from harness.data.prepare import PreparedData
    from harness.plan import resolve_trial
    from harness.stages import Stages

    for name in components:
        component = REGISTRY[name]
        if not component.applies_to(task):
            raise HarnessError(f"--{name.lower()} applies to {'/'.join(component.tasks)} "
                               f"only, not to {task}")
    if not components:
        flags = " ".join(f"--{c.name.lower()}" for c in text_components())
        raise HarnessError(f"nothing to do: give at least one of {flags}")
    config = load_config(config_path) if config_path is not None else parse_config({})
    config = apply_overrides(config, dict(_parse_setting(item) for item in settings))
    rows = _read(input_path, task, "train")
    other: dict[str, TaskData] = {}
    leaves = qc_train or input_path.parent / split_file_name("train", "QC")
    if leaves.is_file() and leaves.resolve() != input_path.resolve():
        other["QC"] = TaskData("QC", read_split(leaves, task="QC", split="train"))
    elif task == "QC":
        other["QC"] = TaskData("QC", read_split(input_path, task="QC", split="train"))
    data = PreparedData(input_path.parent, "file", {}, other)
    spec = resolve_trial(config, task=task, components=tuple(components), seed=0,
                         model=config.model.name, fingerprints={task: "tag"})
    with tempfile.TemporaryDirectory(prefix="harness-tag-") as scratch:
        # Without a sweep YAML there is no sweep cache to share: cache in a scratch folder.
        root = cache_dir or (config.cache_dir / "stages" if config_path else Path(scratch))
        texts = Stages(config=spec.config, cache=StageCache(root), data=data).text_columns(rows, spec)
    target = target_column(task)
    out = rows.copy()
    out["tagged_query"] = texts["query_text"].to_numpy()
    out[f"tagged_{target}"] = texts["target_text"].to_numpy()
    write_jsonl(out, output_path)
    print(f"Tagged {len(out)} rows ({', '.join(REGISTRY.ordered(components))}) -> {output_path}")
    return 0


def _parse_setting(item: str) -> tuple[str, object]:
    import yaml

    path, sep, value = item.partition("=")
    if not sep or not path:
        raise HarnessError(f"--set {item!r}: expected PATH=VALUE, e.g. components.HCT.split=reference")
    return path.strip(), yaml.safe_load(value)

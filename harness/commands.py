"""Stage commands: run one component on one competition-format file, the way users of the
reference scripts run one stage at a time. Same validation and errors as the sweep's loader."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.config import APPLICABLE_TASKS, HCTConfig, QRConfig
from harness.data import target_column
from harness.data.loader import format_dropped, read_split, write_jsonl
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
    config = QRConfig(mode=mode, use_model=pred_path is not None)
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


def tag_command(*, task: str, input_path: Path, output_path: Path, lt: bool, hct: bool,
                sit: bool, dg: bool, hct_split: str = "smart") -> int:
    """Add `tagged_query` and `tagged_<target>` fields; original fields are kept."""
    from harness.components import describe, tagging

    asked = {"LT": lt, "HCT": hct, "SIT": sit, "DG": dg}
    for name, on in asked.items():
        if on and task not in APPLICABLE_TASKS[name]:
            raise HarnessError(f"--{name.lower()} applies to {'/'.join(APPLICABLE_TASKS[name])} "
                               f"only, not to {task}")
    if not any(asked.values()):
        raise HarnessError("nothing to do: give at least one of --lt --hct --sit --dg")
    rows = _read(input_path, task, "train")
    target = target_column(task)
    query = rows["origin_query"].astype(str)
    tagged = rows[target].astype(str)
    if lt:
        query = tagging.language_tag(rows["origin_query"], rows["language"])
    if hct:
        tagged = tagging.hierarchical_category_tag(rows[target], mode=HCTConfig(split=hct_split).split)
    vocab = tagging.load_attribute_vocab(None) if (sit or dg) else None
    if sit:
        suffix = tagging.attribute_tags(rows, vocab=vocab, qc_leaf=None)
        tagged = (tagged + " " + suffix).str.rstrip()
    if dg:
        attributes = tagging.extract_attributes(rows[target], vocab=vocab)
        generated = describe.generate_descriptions(list(rows[target]), attributes,
                                                   generator=describe.OfflineDescriber())
        tagged = (tagged + " " + pd.Series(generated, index=rows.index)).str.rstrip()
    out = rows.copy()
    out["tagged_query"] = query.to_numpy()
    out[f"tagged_{target}"] = tagged.to_numpy()
    write_jsonl(out, output_path)
    print(f"Tagged {len(out)} rows ({', '.join(k for k, v in asked.items() if v)}) -> {output_path}")
    return 0

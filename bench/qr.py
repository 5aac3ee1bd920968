"""QR lexical signals and the LT/HCT/SIT tags at scale: the harness versus row-by-row pandas.

Rows come from the built-in benchmark at full scale (`data synth --scale full`; further seeds
are generated when more rows are asked for than one seed holds), half QC and half QI.
- harness: `qr.lexical_signals` (each distinct text and pair once, sparse TF-IDF rows),
  `qr.quantile_thresholds`, `qr.flag_rows` (lexical rules, no checker model), `language_tag`,
  `hierarchical_category_tag`, `extract_attributes` (each distinct title once).
- row by row: the same rules written the usual way: `Series.apply` for normalisation, token
  Jaccard, the per-row flag rule (`DataFrame.apply(axis=1)`), LT, HCT and attribute matching;
  the reference `TfidfVectorizer(min_df=3, max_df=0.9, ngram_range=(1, 2))` fitted on every
  normalised query and target, with the cosine of each row's two vectors.
Asserts the same cosines (to 1e-9), Jaccards, flags and tags, then reports rows/s and the ratio.
Writes bench/results/qr.md.

    python bench/qr.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer

from harness.components import qr
from harness.components.tagging import (
    ATTRIBUTE_KEYS,
    extract_attributes,
    hierarchical_category_tag,
    language_tag,
    load_attribute_vocab,
    split_category_path,
)
from harness.data import target_column
from harness.data.loader import load_directory
from harness.data.synth import generate

ROOT = Path(__file__).resolve().parents[1]
CONFIG = qr.QRConfig(use_model=False)


def benchmark_rows(rows: int, workdir: Path) -> dict[str, pd.DataFrame]:
    """`rows // 2` labelled rows per task from full-scale benchmarks of seeds 0, 1, ..."""
    need = {"QC": rows // 2, "QI": rows - rows // 2}
    parts: dict[str, list[pd.DataFrame]] = {"QC": [], "QI": []}
    seed = 0
    while any(sum(map(len, parts[t])) < need[t] for t in need):
        out = workdir / f"full-{seed}"
        if not (out / "synth.json").exists():
            print(f"generating the full-scale benchmark, seed {seed} ...", flush=True)
            generate(out, seed=seed, scale="full")
        data = load_directory(out, tasks=["QC", "QI"])
        for task in need:
            for split in (data[task].train, data[task].dev, data[task].test):
                frame = split.frame.assign(id=f"s{seed}-" + split.frame["id"].astype(str))
                parts[task].append(frame[frame["label"].notna()])
        seed += 1
    return {t: pd.concat(parts[t], ignore_index=True).iloc[:need[t]].reset_index(drop=True)
            for t in need}


def harness_side(task: str, rows: pd.DataFrame, vocab) -> dict[str, object]:
    signals = qr.lexical_signals(rows["origin_query"], rows[target_column(task)])
    thresholds = qr.quantile_thresholds(signals, labels=rows["label"], languages=rows["language"],
                                        config=CONFIG)
    audit = qr.flag_rows(rows, task=task, signals=signals, thresholds=thresholds, config=CONFIG)
    out = {"cosine": signals["cosine"].to_numpy(), "jaccard": signals["jaccard"].to_numpy(),
           "flagged": audit["flagged"].to_numpy(),
           "LT": language_tag(rows["origin_query"], rows["language"]).tolist()}
    if task == "QC":
        out["HCT"] = hierarchical_category_tag(rows["category_path"]).tolist()
    else:
        out["SIT"] = extract_attributes(rows["item_title"], vocab=vocab).to_numpy().tolist()
    return out


_NOT_KEPT, _SPACES = qr._NOT_KEPT, re.compile(r"\s+")


def _normalise(text: object) -> str:
    text = "" if text is None or (isinstance(text, float) and np.isnan(text)) else str(text)
    return _SPACES.sub(" ", _NOT_KEPT.sub(" ", text.lower())).strip()


def _jaccard(row: pd.Series) -> float:
    a, b = set(row["q"].split()), set(row["t"].split())
    return len(a & b) / len(a | b) if a | b else 0.0


def _flag(row: pd.Series, limits: dict) -> bool:
    lim = limits[row["language"]]
    if row["label"] == 0:
        return row["cosine"] >= lim.hi_cos and row["jaccard"] >= lim.hi_jac
    if row["label"] == 1:
        return row["cosine"] < lim.lo_cos and row["jaccard"] < lim.lo_jac
    return False


def row_by_row_side(task: str, rows: pd.DataFrame, vocab) -> dict[str, object]:
    frame = pd.DataFrame({"q": rows["origin_query"].apply(_normalise),
                          "t": rows[target_column(task)].apply(_normalise),
                          "language": rows["language"].astype(str),
                          "label": rows["label"].astype(float)})
    vectorizer = TfidfVectorizer(min_df=qr.MIN_DF, max_df=qr.MAX_DF, ngram_range=qr.NGRAM_RANGE)
    vectorizer.fit(pd.concat([frame["q"], frame["t"]], ignore_index=True))
    cosine = np.asarray(vectorizer.transform(frame["q"]).multiply(vectorizer.transform(frame["t"]))
                        .sum(axis=1)).ravel()
    frame["cosine"] = np.clip(cosine, 0.0, 1.0)
    frame["jaccard"] = frame.apply(_jaccard, axis=1)
    limits = qr.quantile_thresholds(frame[["cosine", "jaccard"]], labels=frame["label"],
                                    languages=frame["language"], config=CONFIG)
    out = {"cosine": frame["cosine"].to_numpy(), "jaccard": frame["jaccard"].to_numpy(),
           "flagged": frame.apply(_flag, axis=1, limits=limits).to_numpy(dtype=bool),
           "LT": rows.apply(lambda r: f"[LANG={r['language']}] {r['origin_query']}", axis=1).tolist()}
    if task == "QC":
        out["HCT"] = rows["category_path"].fillna("").astype(str).apply(
            lambda p: " ".join(f"[D{i}] {part} [/D{i}]"
                               for i, part in enumerate(split_category_path(p), start=1))).tolist()
    else:
        titles = rows["item_title"].fillna("").astype(str)
        out["SIT"] = titles.apply(lambda t: [vocab.matchers[k].find(t.lower()) if k in vocab.matchers
                                             else "" for k in ATTRIBUTE_KEYS]).tolist()
    return out


def _same(task: str, a: dict, b: dict) -> None:
    assert np.allclose(a["cosine"], b["cosine"], rtol=0, atol=1e-9), f"{task}: cosines differ"
    assert np.array_equal(a["jaccard"], b["jaccard"]), f"{task}: Jaccards differ"
    assert np.array_equal(a["flagged"], b["flagged"]), f"{task}: flags differ"
    for tag in ("LT", "HCT", "SIT"):
        if tag in a:
            assert a[tag] == b[tag], f"{task}: {tag} tags differ"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "harness-bench-qr")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "qr.md")
    args = parser.parse_args()
    data = benchmark_rows(args.rows, args.workdir)
    vocab = load_attribute_vocab()
    seconds: dict[str, dict[str, float]] = {"harness": {}, "row by row": {}}
    for task, rows in data.items():
        outputs = {}
        for side, run in (("harness", harness_side), ("row by row", row_by_row_side)):
            start = time.perf_counter()
            outputs[side] = run(task, rows, vocab)
            seconds[side][task] = time.perf_counter() - start
            print(f"{task} {side}: {len(rows):,} rows in {seconds[side][task]:.1f} s", flush=True)
        _same(task, outputs["harness"], outputs["row by row"])
        print(f"{task}: same cosines, Jaccards, flags and tags "
              f"({int(outputs['harness']['flagged'].sum()):,} rows flagged)", flush=True)

    total = sum(map(len, data.values()))
    lines = ["| task | rows | harness s | row by row s | harness rows/s | row by row rows/s | ratio |",
             "|---|---|---|---|---|---|---|"]
    for task, rows in [*data.items(), ("all", None)]:
        n = len(rows) if rows is not None else total
        h = seconds["harness"][task] if rows is not None else sum(seconds["harness"].values())
        r = seconds["row by row"][task] if rows is not None else sum(seconds["row by row"].values())
        lines.append(f"| {task} | {n:,} | {h:.1f} | {r:.1f} | {n / h:,.0f} | {n / r:,.0f} | {r / h:.1f}x |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    machine = f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, pandas {pd.__version__}"
    text = "\n".join([
        "# QR lexical signals and LT/HCT/SIT tags: harness vs row-by-row pandas", "",
        f"`python bench/qr.py --rows {args.rows}` on {machine}, {datetime.now(UTC):%Y-%m-%d}: "
        "labelled rows of the full-scale built-in benchmark, half QC (QR + LT + HCT) and half QI "
        "(QR + LT + SIT). Both sides give the same cosines (1e-9), Jaccards, flags and tags "
        f"(asserted). Peak RSS {peak:.1f} GiB.", "", *lines, ""])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()

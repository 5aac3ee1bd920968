"""Yes/no scoring versus the reference inference procedure, side by side in one run.

Reference (docs/architecture.md, "Reference setup"): generate up to 5 tokens with sampling (temperature 0.15) in
batches of 2, then re-score "yes"/"no" with an extra forward pass per row. Harness: one batched
forward pass comparing the next-token logits of "yes" and "no" (deterministic); the tokens that
every row of a batch starts with (instruction, CoT cues, fixed ICL examples) run once per batch.

Two prompts: "plain" (the QC baseline prompt) and "icl-cot" (CoT cues v1 and 2 fixed ICL
examples, the same for every row: about 3x longer). Both sides score the same prompts with
the same model; the p(yes) of the two must agree (asserted, 1e-4).

    python bench/scoring.py [--rows 512] [--model tiny] [--prompt plain icl-cot]

Prints rows/second of each side and the ratio per prompt, and writes the table to
bench/results/scoring.md with the machine, command and date.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from harness.components.prompts import build_prompts, select_examples, to_examples
from harness.config import ModelConfig
from harness.data.loader import load_directory
from harness.data.prepare import tokenizer_seed_texts
from harness.data.synth import generate
from harness.learner import load_base_model, score_yes_no

os.environ.setdefault("HF_HUB_OFFLINE", "1")
RESULTS = Path(__file__).resolve().parent / "results" / "scoring.md"


def reference_scores(loaded, prompts: list[str], *, batch_size: int = 2) -> list[float]:
    """Sampled generation of up to 5 tokens, then a re-scoring forward pass per row."""
    tokenizer, model = loaded.tokenizer, loaded.model
    scores = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        encoded = tokenizer(chunk, return_tensors="pt", padding=True).to(loaded.device)
        with torch.inference_mode():
            model.generate(**encoded, max_new_tokens=5, do_sample=True, temperature=0.15,
                           pad_token_id=tokenizer.pad_token_id)
            for prompt in chunk:
                ids = tokenizer(prompt, return_tensors="pt").input_ids.to(loaded.device)
                logits = model(input_ids=ids).logits[0, -1]
                pair = torch.softmax(logits[[loaded.yes_id, loaded.no_id]].float(), dim=-1)
                scores.append(float(pair[0]))
    return scores


def bench_prompts(data, rows: int, variant: str) -> list[str]:
    """QC test prompts: the plain baseline prompt, or CoT v1 + 2 fixed ICL examples."""
    def columns(frame):
        return frame.rename(columns={"origin_query": "query_text", "category_path": "target_text"})

    test = columns(data["QC"].test.frame.head(rows))
    if variant == "plain":
        return build_prompts(test, task="QC", cot_version=None, examples=None)
    pool = columns(data["QC"].train.frame)
    examples = to_examples(pool, select_examples(test, pool, k=2, strategy="fixed"))
    return build_prompts(test, task="QC", cot_version="v1", examples=examples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--prompt", nargs="+", choices=["plain", "icl-cot"],
                        default=["plain", "icl-cot"])
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-scoring-"))
    generate(work / "data", seed=0, scale="small")
    data = load_directory(work / "data", tasks=["QC"])

    def corpus():
        yield from tokenizer_seed_texts()
        yield from data["QC"].train.frame["origin_query"]
        yield from data["QC"].train.frame["category_path"]

    loaded = load_base_model(model=ModelConfig(name=args.model), corpus=corpus(),
                             cache_dir=work / "models")
    machine = (f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, "
               f"torch {torch.__version__}, device {loaded.device}, "
               f"{torch.get_num_threads()} torch threads")
    lines = []
    for variant in args.prompt:
        prompts = bench_prompts(data, args.rows, variant)
        tokens = np.mean([len(x) for x in loaded.tokenizer(prompts)["input_ids"]])
        start = time.perf_counter()
        ours = score_yes_no(loaded, prompts=prompts, batch_size=args.batch_size, max_length=4096)
        harness_seconds = time.perf_counter() - start
        start = time.perf_counter()
        theirs = reference_scores(loaded, prompts)
        reference_seconds = time.perf_counter() - start
        np.testing.assert_allclose(ours, theirs, atol=1e-4)
        ratio = reference_seconds / harness_seconds
        print(f"{variant}: {len(prompts)} QC prompts, {tokens:.0f} tokens on average")
        print(f"  harness   (one forward pass, batch {args.batch_size}, shared prefix once): "
              f"{len(prompts) / harness_seconds:9.1f} rows/s")
        print(f"  reference (sample 5 tokens, batch 2, re-score):  "
              f"{len(prompts) / reference_seconds:9.1f} rows/s")
        print(f"  speed-up: {ratio:.1f}x (same p(yes) within 1e-4)")
        lines.append(f"| {variant} | {tokens:.0f} | {len(prompts) / harness_seconds:.1f} | "
                     f"{len(prompts) / reference_seconds:.1f} | **{ratio:.1f}x** |")
    command = "python bench/" + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        "# Yes/no scoring: harness vs the reference procedure\n\n"
        f"`{command}` on {machine}, model {args.model}, {datetime.date.today()}: "
        f"{args.rows} QC test prompts of the built-in benchmark (small scale). Reference: sampled "
        "generation of up to 5 tokens at temperature 0.15 in batches of 2, then a re-scoring "
        f"forward pass per row. Harness: one batched forward pass (batch {args.batch_size}), the "
        "tokens every row of a batch starts with run once. Both give the same p(yes) within "
        "1e-4 (asserted).\n\n"
        "| prompt | tokens per prompt | harness rows/s | reference rows/s | speed-up |\n"
        "|---|---|---|---|---|\n" + "\n".join(lines) + "\n", encoding="utf-8")
    print(f"table: {RESULTS}")


if __name__ == "__main__":
    main()

"""Yes/no scoring versus the reference inference procedure, side by side in one run.

Reference (docs/architecture.md, "Reference setup"): generate up to 5 tokens with sampling (temperature 0.15) in
batches of 2, then re-score "yes"/"no" with an extra forward pass per row. Harness: one batched
forward pass comparing the next-token logits of "yes" and "no" (deterministic).

    python bench/scoring.py [--rows 512] [--model tiny]

Prints rows/second of each and the ratio, with the machine it ran on.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from harness.components.prompts import build_prompts
from harness.config import ModelConfig
from harness.data.loader import load_directory
from harness.data.prepare import tokenizer_seed_texts
from harness.data.synth import generate
from harness.learner import load_base_model, score_yes_no

os.environ.setdefault("HF_HUB_OFFLINE", "1")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-scoring-"))
    generate(work / "data", seed=0, scale="small")
    data = load_directory(work / "data", tasks=["QC"])
    rows = data["QC"].test.frame.head(args.rows).rename(
        columns={"origin_query": "query_text", "category_path": "target_text"})
    prompts = build_prompts(rows, task="QC", cot_version=None, examples=None)

    def corpus():
        yield from tokenizer_seed_texts()
        yield from data["QC"].train.frame["origin_query"]
        yield from data["QC"].train.frame["category_path"]

    loaded = load_base_model(model=ModelConfig(name=args.model), corpus=corpus(), cache_dir=work / "models")

    start = time.perf_counter()
    score_yes_no(loaded, prompts=prompts, batch_size=args.batch_size, max_length=1024)
    harness_seconds = time.perf_counter() - start
    start = time.perf_counter()
    reference_scores(loaded, prompts)
    reference_seconds = time.perf_counter() - start

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"device {loaded.device}, model {args.model}, {len(prompts)} QC prompts")
    print(f"harness   (one forward pass, batch {args.batch_size}): {len(prompts) / harness_seconds:9.1f} rows/s")
    print(f"reference (sample 5 tokens, batch 2, re-score):        {len(prompts) / reference_seconds:9.1f} rows/s")
    print(f"speed-up: {reference_seconds / harness_seconds:.1f}x")


if __name__ == "__main__":
    main()

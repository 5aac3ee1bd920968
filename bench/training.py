"""LoRA training: the harness's loop versus the usual hand-written causal-LM loop, side by side.

Both train the same fresh LoRA adapter (same seed, rank, learning rate, schedule, epochs, batch
size) on the same QC prompts of the built-in benchmark with the built-in tiny model, and both
are scored by the same yes/no scorer on the same test rows.
- harness: `harness.learner.train_lora` — batches of similar length (less padding), left
  padding, only the last position goes through the output layer, loss on the answer token.
- hand-written: what a Trainer/SFT-style loop does — the answer token appended to the prompt,
  right padding, shuffled batches, full logits for every position, `labels` = -100 except the
  answer token (the model's own shifted cross-entropy).

The two see the rows in different orders, so their losses are not equal step by step; the
benchmark asserts that the final epoch losses agree within 0.05 and test F1 within 0.05, then
reports examples/second of each and the ratio. Writes bench/results/training.md.

    python bench/training.py [--rows 1200] [--epochs 3] [--model tiny]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import f1_score
from transformers import get_scheduler

from harness.components.prompts import build_prompts
from harness.config import LoraConfig, ModelConfig, TrainingConfig
from harness.data.loader import load_directory
from harness.data.prepare import tokenizer_seed_texts
from harness.data.split import stratified_subsample
from harness.data.synth import generate
from harness.learner import load_base_model, score_yes_no
from harness.learner.model import cpu_threads
from harness.learner.score import encode_prompts
from harness.learner.train import fresh_adapter, train_lora

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]


def hand_written(loaded, prompts: list[str], labels: np.ndarray, training: TrainingConfig,
                 seed: int) -> tuple[list[float], float]:
    """The usual loop; returns (mean loss per epoch, examples per second)."""
    ids, _ = encode_prompts(loaded, prompts, max_length=training.max_length)
    answers = [loaded.yes_id if y else loaded.no_id for y in labels]
    sequences = [seq + [answer] for seq, answer in zip(ids, answers, strict=True)]
    params = [p for p in loaded.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=training.learning_rate, weight_decay=training.weight_decay)
    steps = math.ceil(len(sequences) / training.batch_size) * int(training.epochs)
    scheduler = get_scheduler(training.scheduler, optimizer,
                              num_warmup_steps=math.ceil(training.warmup_ratio * steps),
                              num_training_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    pad = loaded.tokenizer.pad_token_id
    losses, examples = [], 0
    start = time.perf_counter()
    with cpu_threads(loaded):
        loaded.model.train()
        for _ in range(int(training.epochs)):
            order = torch.randperm(len(sequences), generator=generator).tolist()
            total = 0.0
            for first in range(0, len(order), training.batch_size):
                rows = [sequences[i] for i in order[first:first + training.batch_size]]
                width = max(len(r) for r in rows)
                input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                target = torch.full((len(rows), width), -100, dtype=torch.long)
                for i, row in enumerate(rows):
                    input_ids[i, :len(row)] = torch.tensor(row)
                    mask[i, :len(row)] = 1
                    target[i, len(row) - 1] = row[-1]  # only the answer token is learned
                out = loaded.model(input_ids=input_ids.to(loaded.device),
                                   attention_mask=mask.to(loaded.device),
                                   labels=target.to(loaded.device), use_cache=False)
                out.loss.backward()
                torch.nn.utils.clip_grad_norm_(params, training.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                total += out.loss.item() * len(rows)
            losses.append(total / len(sequences))
            examples += len(sequences)
        loaded.model.eval()
    return losses, examples / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1200)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "training.md")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-training-"))
    generate(work / "data", seed=0, scale="small")
    data = load_directory(work / "data", tasks=["QC"])

    def texts(frame):
        return frame.rename(columns={"origin_query": "query_text", "category_path": "target_text"})

    train = stratified_subsample(data["QC"].train.frame, n=args.rows, seed=0)
    test = data["QC"].test.frame
    train_prompts = build_prompts(texts(train), task="QC", cot_version=None, examples=None)
    test_prompts = build_prompts(texts(test), task="QC", cot_version=None, examples=None)
    labels = train["label"].to_numpy(dtype=int)

    def corpus():
        yield from tokenizer_seed_texts()
        yield from data["QC"].train.frame["origin_query"]
        yield from data["QC"].train.frame["category_path"]

    loaded = load_base_model(model=ModelConfig(name=args.model), corpus=corpus(),
                             cache_dir=work / "models")
    lora = LoraConfig(r=16, alpha=16, train_embeddings=True, train_lm_head=True)
    training = TrainingConfig(epochs=args.epochs, learning_rate=3e-3, batch_size=16, max_length=384,
                              scheduler="cosine", warmup_ratio=0.05)
    results = {}
    for side in ("harness", "hand-written"):
        with fresh_adapter(loaded, lora=lora, seed=0):
            if side == "harness":
                trained = train_lora(loaded, prompts=train_prompts, labels=labels,
                                     training=training, seed=0, progress=False)
                losses, speed = trained.epoch_losses, trained.examples_per_second
            else:
                losses, speed = hand_written(loaded, train_prompts, labels, training, seed=0)
            p_yes = score_yes_no(loaded, prompts=test_prompts, batch_size=64, max_length=384)
        f1 = f1_score(test["label"].to_numpy(dtype=int), (p_yes >= 0.5).astype(int))
        results[side] = {"losses": losses, "speed": speed, "f1": f1}
        print(f"{side}: {speed:.1f} examples/s, epoch losses "
              f"{', '.join(f'{x:.4f}' for x in losses)}, test F1 {f1:.4f}", flush=True)

    harness, hand = results["harness"], results["hand-written"]
    assert abs(harness["losses"][-1] - hand["losses"][-1]) < 0.05, "final losses disagree"
    assert abs(harness["f1"] - hand["f1"]) < 0.05, "test F1 disagrees"
    machine = (f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, torch "
               f"{torch.__version__}, device {loaded.device}")
    rows = ["| loop | examples/s | epoch losses | test F1 |", "|---|---|---|---|"]
    for side, r in results.items():
        rows.append(f"| {side} | {r['speed']:.1f} | {', '.join(f'{x:.4f}' for x in r['losses'])} "
                    f"| {r['f1']:.4f} |")
    text = "\n".join([
        "# LoRA training: harness loop vs a hand-written causal-LM loop", "",
        f"`python bench/training.py --rows {args.rows} --epochs {args.epochs} --model {args.model}` "
        f"on {machine}, {datetime.now(UTC):%Y-%m-%d}: {len(train_prompts)} QC training prompts "
        f"of the built-in benchmark (small scale), {len(test_prompts)} test rows, LoRA r 16, batch "
        "16, the same seed. Final epoch losses and test F1 agree within the asserted 0.05.", "",
        *rows, "", f"Speed-up of the harness loop: **{harness['speed'] / hand['speed']:.2f}x**.", ""])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()

"""Yes/no scoring: p(yes) from the next-token logits of "yes" and "no" after one forward pass."""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from functools import cache

import numpy as np
import torch
from tqdm.auto import tqdm

from harness.learner.model import LoadedModel, cpu_threads

# Prompts tokenised per call: the tokenizer's own lists (about 36 bytes a token) live for one chunk.
ENCODE_CHUNK = 4096
_CHECKED = 4          # prompts of each chunk encoded whole to check the shortcuts
_MIN_HEAD = 64        # characters of shared text worth encoding once


def _plain(tokenizer, texts: list[str], *, special: bool = True) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=special, verbose=False)["input_ids"]


def _backend(tokenizer, texts: list[str], *, special: bool = True) -> list[list[int]]:
    """The Rust tokenizer's ids without the Python-side encoding objects (a third faster)."""
    return [e.ids for e in tokenizer.backend_tokenizer.encode_batch_fast(
        texts, add_special_tokens=special)]


def _head_cuts(texts: list[str]) -> list[int]:
    """Where the text that every prompt starts with (preamble, instruction, CoT cues) may be cut
    so that its tokens are encoded once: at the start and at the end of its last blank line.
    Which cut keeps the tokens unchanged depends on the tokenizer's pre-tokenizer; the caller
    checks."""
    common = os.path.commonprefix(texts)   # compares only the smallest and largest text
    blank = common.rfind("\n\n", 0, len(common) - 8)
    if blank < _MIN_HEAD:
        return []
    end = blank
    while end < len(common) and common[end] == "\n":
        end += 1
    return [end, blank]


def _token_ids(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of `texts` as the tokenizer gives them (with special tokens), faster: the shared
    head is encoded once and the Rust tokenizer is called directly. Each shortcut is used only
    when it reproduces the plain encoding of the first prompts exactly."""
    reference = _plain(tokenizer, texts[:_CHECKED])
    encode = _plain
    if getattr(tokenizer, "backend_tokenizer", None) is not None \
            and _backend(tokenizer, texts[:_CHECKED]) == reference:
        encode = _backend
    for cut in _head_cuts(texts):
        head = encode(tokenizer, [texts[0][:cut]])[0]
        tails = encode(tokenizer, [t[cut:] for t in texts[:_CHECKED]], special=False)
        if [head + tail for tail in tails] == reference:
            return [head + tail for tail in encode(tokenizer, [t[cut:] for t in texts],
                                                   special=False)]
    return encode(tokenizer, texts)


def encode_prompts(loaded: LoadedModel, prompts: Sequence[str], *,
                   max_length: int) -> tuple[list[np.ndarray], int]:
    """Token ids of each prompt as int32 arrays (a ninth of the memory of Python lists: 300,000
    long prompts fit in about 0.5 GB), cut from the LEFT to `max_length - 1` tokens (the answer
    token takes the last place), keeping a leading BOS token. Returns (ids, number truncated)."""
    if max_length < 2:
        raise ValueError("max_length must leave room for the prompt and the answer token")
    tokenizer = loaded.tokenizer
    limit = max_length - 1
    bos = tokenizer.bos_token_id
    out: list[np.ndarray] = []
    truncated = 0
    for start in range(0, len(prompts), ENCODE_CHUNK):
        for ids in _token_ids(tokenizer, list(prompts[start:start + ENCODE_CHUNK])):
            if len(ids) > limit:
                truncated += 1
                keep_bos = bos is not None and ids[0] == bos
                ids = [bos, *ids[len(ids) - limit + 1:]] if keep_bos else ids[len(ids) - limit:]
            out.append(np.asarray(ids, dtype=np.int32))
    return out, truncated


def left_pad(sequences: Sequence[Sequence[int]], *, pad_id: int,
             device: torch.device) -> dict[str, torch.Tensor]:
    """A left-padded batch with attention mask and explicit position ids (0 at the first real
    token), so every row's last position is its last real token."""
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if len(seq):
            input_ids[row, width - len(seq):] = torch.as_tensor(seq, dtype=torch.long)
            attention_mask[row, width - len(seq):] = 1
    position_ids = (attention_mask.cumsum(-1) - 1).masked_fill(attention_mask == 0, 1)
    return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device),
            "position_ids": position_ids.to(device)}


def next_token_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits (batch, vocab) for the token after each row's last position; only that position
    goes through the output layer."""
    return model(**batch, use_cache=False, logits_to_keep=1).logits[:, -1, :]


# A shared prefix shorter than this is not worth its own forward pass.
MIN_SHARED_PREFIX = 8


def shared_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Tokens that every sequence starts with, leaving each at least one token of its own."""
    shortest = min(len(s) for s in sequences)
    heads = np.stack([np.asarray(s[:shortest]) for s in sequences])
    differs = (heads != heads[0]).any(axis=0)
    shared = int(np.argmax(differs)) if differs.any() else shortest
    return min(shared, shortest - 1)


@cache
def _cache_keyword(model_class: type) -> str:
    """transformers 5 renamed `past_key_values` to `cache` (the old name warns)."""
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters \
        else "past_key_values"


def _base_class(model: torch.nn.Module) -> type:
    get_base = getattr(model, "get_base_model", None)
    return type(get_base() if get_base is not None else model)


def batch_next_token_logits(model: torch.nn.Module, sequences: Sequence[Sequence[int]], *,
                            pad_id: int, device: torch.device,
                            share_prefix: bool = True) -> torch.Tensor:
    """Next-token logits (batch, vocab) after each sequence, as :func:`next_token_logits` on the
    left-padded batch, but the tokens every row starts with (the instruction, fixed examples, CoT
    cues) go through the model once: their keys and values are computed for one row and
    repeated for the batch, and only each row's own tokens are run B times. Gradients flow
    through the shared part as usual. Equal to the padded forward up to float rounding (LoRA
    dropout, in training, draws one mask for the shared part). `share_prefix=False` (gradient
    checkpointing, which turns the cache off) runs the plain padded batch."""
    shared = shared_prefix_length(sequences) if share_prefix and len(sequences) > 1 else 0
    if shared < MIN_SHARED_PREFIX:
        return next_token_logits(model, left_pad(sequences, pad_id=pad_id, device=device))
    keyword = _cache_keyword(_base_class(model))
    prefix = torch.as_tensor([list(sequences[0][:shared])], dtype=torch.long, device=device)
    past = model(input_ids=prefix, use_cache=True, logits_to_keep=1)
    kv_cache = getattr(past, "cache", None)
    if kv_cache is None:  # transformers 4.x
        kv_cache = getattr(past, "past_key_values", None)
    if not hasattr(kv_cache, "batch_repeat_interleave"):  # a model without a repeatable cache
        return next_token_logits(model, left_pad(sequences, pad_id=pad_id, device=device))
    kv_cache.batch_repeat_interleave(len(sequences))
    rest = left_pad([s[shared:] for s in sequences], pad_id=pad_id, device=device)
    mask = torch.cat([torch.ones((len(sequences), shared), dtype=torch.long, device=device),
                      rest["attention_mask"]], dim=1)
    out = model(input_ids=rest["input_ids"], attention_mask=mask,
                position_ids=rest["position_ids"] + shared, use_cache=True, logits_to_keep=1,
                **{keyword: kv_cache})
    return out.logits[:, -1, :]


def score_yes_no(loaded: LoadedModel, *, prompts: list[str], batch_size: int, max_length: int,
                 progress: bool = False) -> np.ndarray:
    """p(yes) for each prompt (softmax over the "yes" and "no" logits), in input order.

    Uses whatever adapter is active (or the bare base model). Prompts are batched by length;
    the result does not depend on the batch size beyond float rounding.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    if not prompts:
        return np.zeros(0, dtype=np.float64)
    ids, _ = encode_prompts(loaded, prompts, max_length=max_length)
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))  # stable: ties keep input order
    p_yes = np.empty(len(ids), dtype=np.float64)
    pair = torch.tensor([loaded.yes_id, loaded.no_id], device=loaded.device)
    model = loaded.model
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(ids), desc="score", unit="row", disable=not progress, leave=False)
    try:
        with bar, cpu_threads(loaded), torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                logits = batch_next_token_logits(model, [ids[i] for i in rows],
                                                 pad_id=loaded.tokenizer.pad_token_id,
                                                 device=loaded.device)
                two = logits.index_select(-1, pair).float()
                p_yes[rows] = torch.softmax(two, dim=-1)[:, 0].cpu().numpy()
                bar.update(len(rows))
    finally:
        model.train(was_training)
    return p_yes

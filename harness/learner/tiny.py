"""The built-in CPU model: a byte-level BPE tokenizer trained on the run's own text and a small,
randomly initialised Qwen2-architecture causal LM."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from harness.config import TinyModelConfig

# Bump when the tokenizer recipe changes: it is part of the cache key.
TOKENIZER_VERSION = 1
END_OF_TEXT = "<|endoftext|>"
# Weight init std of the random base. LoRA on top of a random network learns only what the random
# features allow: 0.2 (not Qwen's 0.02) gives attention and MLPs varied enough features that the
# toy benchmark is learned in a few epochs instead of stalling near chance.
_INIT_STD = 0.2
# Words that must be single tokens (the answers), with the merges that build them.
_FORCED_MERGES = (("y", "e"), ("ye", "s"), ("n", "o"))


def _corpus_key(texts: list[str], vocab_size: int) -> str:
    digest = hashlib.sha256(f"tiny-bpe:v{TOKENIZER_VERSION}:{vocab_size}\0".encode())
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:24]


def _force_answer_tokens(tokenizer: Tokenizer) -> Tokenizer:
    """Put the merges that build "yes" and "no" first, so each is always one token."""
    data = json.loads(tokenizer.to_str())
    vocab: dict[str, int] = data["model"]["vocab"]
    pairs_as_strings = bool(data["model"]["merges"]) and isinstance(data["model"]["merges"][0], str)
    merges = [tuple(m.split(" ")) if pairs_as_strings else tuple(m) for m in data["model"]["merges"]]
    next_id = max(vocab.values()) + 1
    for left, right in _FORCED_MERGES:
        if left + right not in vocab:
            vocab[left + right] = next_id
            next_id += 1
    merges = list(_FORCED_MERGES) + [m for m in merges if m not in _FORCED_MERGES]
    data["model"]["merges"] = [" ".join(m) if pairs_as_strings else list(m) for m in merges]
    return Tokenizer.from_str(json.dumps(data))


def _train_tokenizer(texts: list[str], vocab_size: int) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(_FORCED_MERGES),  # room for the forced answer tokens
        min_frequency=2,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return _force_answer_tokens(tokenizer)


def _load(path: Path) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast.from_pretrained(str(path), padding_side="left")


def build_tiny_tokenizer(corpus: Iterable[str], *, vocab_size: int,
                         cache_dir: Path) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on `corpus`, cached under `cache_dir`.

    The entry is keyed by a hash of (corpus, vocab_size, recipe version) and written atomically;
    a later call with the same corpus loads it instead of training again. "yes" and "no" are
    single tokens; "<|endoftext|>" is the end-of-text and padding token.
    """
    texts = [str(text) for text in corpus]
    if not texts:
        raise ValueError("build_tiny_tokenizer needs a non-empty corpus")
    cache_dir = Path(cache_dir)
    final = cache_dir / f"tiny-bpe-{vocab_size}-{_corpus_key(texts, vocab_size)}"
    if (final / "tokenizer.json").is_file():
        return _load(final)
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-tiny-bpe-", dir=cache_dir))
    try:
        fast = PreTrainedTokenizerFast(
            tokenizer_object=_train_tokenizer(texts, vocab_size),
            eos_token=END_OF_TEXT, pad_token=END_OF_TEXT, padding_side="left")
        fast.save_pretrained(str(staging))
        try:
            os.replace(staging, final)
        except OSError:
            if not (final / "tokenizer.json").is_file():  # not a concurrent writer's entry
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return _load(final)


def build_tiny_model(config: TinyModelConfig, *, vocab_size: int) -> Qwen2ForCausalLM:
    """A float32 Qwen2 LM with the config's sizes; weights depend only on `config.seed`."""
    qwen = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=False,
        use_cache=False,
        initializer_range=_INIT_STD,
        dtype="float32",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = Qwen2ForCausalLM(qwen)
    return model.to(torch.float32).eval()

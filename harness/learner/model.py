"""Loading a base model: the built-in tiny model, a Hugging Face id or a local path."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from harness.config import ModelConfig
from harness.errors import HarnessError
from harness.learner.tiny import build_tiny_model, build_tiny_tokenizer

RESPONSE_MARKER = "### Response:\n"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelLoadError(HarnessError):
    """The base model or its tokenizer cannot be loaded or does not fit the yes/no protocol."""


@dataclass
class LoadedModel:
    """A base model ready for LoRA trials; `peft_model` is managed by `fresh_adapter`."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    yes_id: int
    no_id: int
    device: torch.device
    name: str
    dtype: torch.dtype
    # Torch intra-op threads while training/scoring on CPU (None: torch's default). The tiny
    # model uses 1: its operations are too small to split, and on a busy machine a second
    # thread that waits for a core made training 20-100x slower in measurements.
    cpu_threads: int | None = None
    peft_model: Any = field(default=None, repr=False)


@contextmanager
def cpu_threads(loaded: LoadedModel) -> Iterator[None]:
    """Apply `loaded.cpu_threads` for the block when the model runs on the CPU."""
    if loaded.cpu_threads is None or loaded.device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(loaded.cpu_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_device(device: str) -> torch.device:
    """`auto` is CUDA when available, else CPU; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ModelLoadError(f"model.device: invalid device {device!r} ({error})") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"model.device: {device!r} asked for, but CUDA is not available")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto` is bfloat16 on a CUDA device that supports it, else float32."""
    if dtype != "auto":
        return _DTYPES[dtype]
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def answer_token_id(tokenizer: PreTrainedTokenizerBase, word: str, *, name: str) -> int:
    """The id of `word` as the single token that follows "### Response:\\n"."""
    prefix = tokenizer(RESPONSE_MARKER, add_special_tokens=False)["input_ids"]
    full = tokenizer(RESPONSE_MARKER + word, add_special_tokens=False)["input_ids"]
    if len(full) != len(prefix) + 1 or full[: len(prefix)] != prefix:
        pieces = tokenizer.convert_ids_to_tokens(full[len(prefix) - 1:] if prefix else full)
        raise ModelLoadError(
            f"model {name!r}: the answer {word!r} after '### Response:\\n' is not a single token "
            f"(tokenizes as {pieces}); pick a model whose tokenizer keeps it whole")
    return full[-1]


def _load_pretrained(config: ModelConfig, device: torch.device,
                     dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = Path(config.name).expanduser()
    if local.is_dir() and not (local / "config.json").is_file():
        raise ModelLoadError(f"model.name: {config.name!r} is a folder without config.json, "
                             "not a saved Hugging Face model")
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            config.name, trust_remote_code=config.trust_remote_code, padding_side="left")
        model = AutoModelForCausalLM.from_pretrained(
            config.name, dtype=dtype, trust_remote_code=config.trust_remote_code)
    except (OSError, ValueError, KeyError, ImportError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        reason = reason if len(reason) <= 300 else reason[:297] + "..."
        where = "local path" if local.exists() else "Hugging Face id or local path"
        raise ModelLoadError(f"model.name: cannot load {config.name!r} as a {where}: {reason}") \
            from None
    return model.to(device), tokenizer


def load_base_model(*, model: ModelConfig, corpus: Iterable[str] | None,
                    cache_dir: Path) -> LoadedModel:
    """Load the base model named by `model.name` ("tiny" needs `corpus` to train its tokenizer)."""
    device = resolve_device(model.device)
    if model.name == "tiny":
        if corpus is None:
            raise ModelLoadError("model.name: the tiny model needs a text corpus for its tokenizer")
        dtype = _DTYPES["float32"] if model.dtype == "auto" else _DTYPES[model.dtype]
        tokenizer = build_tiny_tokenizer(corpus, vocab_size=model.tiny.vocab_size,
                                         cache_dir=Path(cache_dir) / "tiny_tokenizer")
        network = build_tiny_model(model.tiny, vocab_size=len(tokenizer)).to(device, dtype)
    else:
        dtype = resolve_dtype(model.dtype, device)
        network, tokenizer = _load_pretrained(model, device, dtype)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError(f"model {model.name!r}: tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    network.config.pad_token_id = tokenizer.pad_token_id
    network.eval()
    return LoadedModel(
        model=network, tokenizer=tokenizer,
        yes_id=answer_token_id(tokenizer, "yes", name=model.name),
        no_id=answer_token_id(tokenizer, "no", name=model.name),
        device=device, name=model.name, dtype=dtype,
        cpu_threads=model.cpu_threads or (1 if model.name == "tiny" else None))

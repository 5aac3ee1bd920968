"""LoRA adapters on a shared base model, and the training loop (loss on the answer token only)."""

from __future__ import annotations

import gc
import itertools
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import peft
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import get_scheduler
from transformers.pytorch_utils import Conv1D

from harness.config import LoraConfig, TrainingConfig
from harness.errors import ConfigError
from harness.learner.model import LoadedModel, cpu_threads
from harness.learner.score import batch_next_token_logits, encode_prompts

_adapter_ids = itertools.count()
# Sequences sorted by length inside windows of this many batches (length bucketing).
_BUCKET_BATCHES = 32


class NonFiniteLossError(RuntimeError):
    """The training loss (or gradient norm) became NaN or infinite."""


@dataclass
class TrainResult:
    step_losses: list[float]  # mean answer-token loss of each optimizer step
    epoch_losses: list[float]  # mean loss of each (possibly partial) epoch
    seconds: float
    examples_per_second: float
    truncated: int  # prompts cut from the left to fit training.max_length


def _module_name(model: torch.nn.Module, module: torch.nn.Module | None) -> str | None:
    for name, candidate in model.named_modules():
        if candidate is module:
            return name.rsplit(".", 1)[-1]
    return None


def _peft_config(model: torch.nn.Module, lora: LoraConfig) -> peft.LoraConfig:
    """`all-linear` plus the output layer has no peft spelling: list the linear layers by name."""
    targets: str | list[str] = lora.target_modules
    output = model.get_output_embeddings()
    if lora.train_lm_head:
        head = _module_name(model, output)
        if head is None:
            raise ValueError("lora.train_lm_head: the model has no output layer to adapt")
        if targets == "all-linear":
            targets = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                              if isinstance(module, torch.nn.Linear | Conv1D)
                              and module is not output})
        targets = sorted({*targets, head})
    modules_to_save = None
    if lora.train_embeddings:
        embeddings = _module_name(model, model.get_input_embeddings())
        if embeddings is None:
            raise ValueError("lora.train_embeddings: the model has no input embeddings")
        modules_to_save = [embeddings]
    return peft.LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
        modules_to_save=modules_to_save, task_type="CAUSAL_LM")


@contextmanager
def _seeded(device: torch.device, seed: int) -> Iterator[None]:
    """Seed torch's global RNG for the block and restore its state afterwards."""
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


@contextmanager
def fresh_adapter(loaded: LoadedModel, *, lora: LoraConfig, seed: int) -> Iterator[peft.PeftModel]:
    """A new LoRA adapter (weights drawn from `seed`) on the shared base model, made active for
    the block and deleted afterwards, so nothing learned reaches the next trial. Blocks may nest:
    the enclosing adapter is active again on exit."""
    name = f"trial_{next(_adapter_ids)}"
    config = _peft_config(loaded.model, lora)
    previous = list(loaded.peft_model.active_adapters) if loaded.peft_model is not None else []
    try:
        with _seeded(loaded.device, seed), warnings.catch_warnings():
            # peft 0.21 reads a property that transformers 5 renamed
            warnings.filterwarnings("ignore", ".*is_gradient_checkpointing", FutureWarning)
            if loaded.peft_model is None:
                loaded.peft_model = peft.get_peft_model(loaded.model, config, adapter_name=name)
            else:
                loaded.peft_model.add_adapter(name, config)
                loaded.peft_model.set_adapter(name)
    except ValueError as error:  # e.g. target modules that the model does not have
        raise ConfigError(f"lora: {' '.join(str(error).split())}") from None
    loaded.model.eval()
    try:
        yield loaded.peft_model
    finally:
        peft_model = loaded.peft_model
        others = [adapter for adapter in peft_model.peft_config if adapter != name]
        if others:
            peft_model.set_adapter(previous[0] if previous else others[0])
            peft_model.delete_adapter(name)
        else:
            # No adapter left: give back the untouched base model (peft cannot add to an empty one).
            peft_model.delete_adapter(name)
            loaded.model = peft_model.unload()
            loaded.peft_model = None
        loaded.model.eval()
        gc.collect()
        if loaded.device.type == "cuda":
            torch.cuda.empty_cache()


def _epoch_batches(lengths: Sequence[int], batch_size: int,
                   generator: torch.Generator) -> list[list[int]]:
    """Shuffled batches of similar length: shuffle, sort within windows, shuffle batch order."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    window = batch_size * _BUCKET_BATCHES
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def _scheduler_name(name: str) -> str:
    return "constant_with_warmup" if name == "constant" else name


def _set_checkpointing(model: torch.nn.Module, *, on: bool) -> None:
    """Activation (gradient) checkpointing on or off; transformers 5 renamed the methods."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        if on:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.activation_checkpointing_disable()
    elif on:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_disable()


@contextmanager
def _training_mode(loaded: LoadedModel, *, seed: int, checkpointing: bool) -> Iterator[None]:
    """Train mode (and gradient checkpointing) with a seeded RNG for the block; eval mode after."""
    model = loaded.model
    if checkpointing:
        _set_checkpointing(model, on=True)
    try:
        with cpu_threads(loaded), _seeded(loaded.device, seed):  # seeded: LoRA dropout
            model.train()
            yield
    finally:
        if checkpointing:
            _set_checkpointing(model, on=False)
        model.eval()


def _backward_group(loaded: LoadedModel, ids: list[list[int]], targets: torch.Tensor,
                    group: list[list[int]], *, where: str, share_prefix: bool) -> float:
    """Forward and backward over the micro batches of one optimizer step (gradients add up to
    those of the mean loss over the group's rows); returns the summed loss."""
    group_rows = sum(len(rows) for rows in group)
    total = 0.0
    for rows in group:
        logits = batch_next_token_logits(loaded.model, [ids[i] for i in rows],
                                         pad_id=loaded.tokenizer.pad_token_id,
                                         device=loaded.device, share_prefix=share_prefix).float()
        loss = F.cross_entropy(logits, targets[rows].to(loaded.device), reduction="sum")
        value = loss.item()
        if not math.isfinite(value):
            raise NonFiniteLossError(f"{where}: the training loss is {value}")
        (loss / group_rows).backward()
        total += value
    return total


def train_lora(loaded: LoadedModel, *, prompts: list[str], labels: Sequence[int],
               training: TrainingConfig, seed: int,
               on_epoch_end: Callable[[int, float], None] | None = None,
               progress: bool = True, description: str = "train") -> TrainResult:
    """Train the active adapter to answer "yes" (label 1) or "no" (label 0) after each prompt.

    Cross-entropy on the answer token only; AdamW, warmup + schedule, gradient accumulation
    (`batch_size` is the micro batch), gradient clipping, fractional epochs. `on_epoch_end` gets
    (epoch index, mean epoch loss) and may raise to stop training. Raises NonFiniteLossError as
    soon as the loss or gradient norm is NaN/inf. Deterministic on CPU for a given seed.
    """
    if loaded.peft_model is None:
        raise RuntimeError("train_lora needs an adapter: call it inside fresh_adapter(...)")
    if len(prompts) != len(labels) or not prompts:
        raise ValueError(f"need as many labels as prompts (got {len(prompts)} and {len(labels)})")
    if any(int(label) not in (0, 1) for label in labels):
        raise ValueError("labels must be 0 or 1")
    ids, truncated = encode_prompts(loaded, prompts, max_length=training.max_length)
    lengths = [len(x) for x in ids]
    targets = torch.tensor([loaded.yes_id if int(y) else loaded.no_id for y in labels])

    batches_per_epoch = math.ceil(len(ids) / training.batch_size)
    epoch_sizes = [batches_per_epoch] * math.ceil(training.epochs)
    epoch_sizes[-1] = max(1, round((training.epochs - len(epoch_sizes) + 1) * batches_per_epoch))
    accumulation = training.gradient_accumulation
    total_steps = sum(math.ceil(n / accumulation) for n in epoch_sizes)

    params = [p for p in loaded.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=training.learning_rate,
                                  weight_decay=training.weight_decay)
    scheduler = get_scheduler(_scheduler_name(training.scheduler), optimizer,
                              num_warmup_steps=math.ceil(training.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    generator = torch.Generator().manual_seed(seed)
    step_losses: list[float] = []
    epoch_losses: list[float] = []
    bar = tqdm(total=sum(epoch_sizes), desc=description, unit="batch", disable=not progress)
    examples = 0
    start = time.perf_counter()
    with bar, _training_mode(loaded, seed=seed, checkpointing=training.gradient_checkpointing):
        for epoch, size in enumerate(epoch_sizes):
            batches = _epoch_batches(lengths, training.batch_size, generator)[:size]
            epoch_sum = 0.0
            for first in range(0, size, accumulation):
                group = batches[first:first + accumulation]
                where = f"{description}: epoch {epoch + 1}, step {len(step_losses) + 1}"
                step_sum = _backward_group(loaded, ids, targets, group, where=where,
                                           share_prefix=not training.gradient_checkpointing)
                norm = torch.nn.utils.clip_grad_norm_(params, training.max_grad_norm)
                if not torch.isfinite(norm):
                    raise NonFiniteLossError(f"{where}: the gradient norm is {norm.item()}")
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step_losses.append(step_sum / sum(len(rows) for rows in group))
                epoch_sum += step_sum
                bar.update(len(group))
                bar.set_postfix(epoch=epoch + 1, loss=f"{step_losses[-1]:.4f}")
            epoch_rows = sum(len(rows) for rows in batches)
            examples += epoch_rows
            epoch_losses.append(epoch_sum / epoch_rows)
            if on_epoch_end is not None:
                on_epoch_end(epoch, epoch_losses[-1])
    seconds = time.perf_counter() - start
    return TrainResult(step_losses=step_losses, epoch_losses=epoch_losses, seconds=seconds,
                       examples_per_second=examples / seconds if seconds > 0 else 0.0,
                       truncated=truncated)

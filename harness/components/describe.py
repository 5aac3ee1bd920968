"""Description Generation (DG): `[GEN_TAGS] tag, tag, ... [GEN_DESC] English sentences.` per title.

Two generators share one protocol: `OfflineDescriber` (deterministic, no model, built from the
SIT attributes) and `LLMDescriber` (any causal LM through transformers, batched greedy decoding).
`generate_descriptions` runs a generator over a column of titles, each distinct title once.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from harness.components.prompts import load_text
from harness.components.tagging import ATTRIBUTE_KEYS
from harness.errors import HarnessError

DG_PROMPT = "dg_prompt_v1"
_MARKERS = re.compile(r"\[/?(?:GEN_TAGS|GEN_DESC)\]|\ufffd")
_SPACES = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_LETTER_SIZE = re.compile(r"^(?:X{0,3}[SML]|\d{1,3}(?:[.,]5)?)$")
_MAX_TAGS = 10
_MAX_DESC_CHARS = 300


@runtime_checkable
class DescriptionGenerator(Protocol):
    """Writes one `[GEN_TAGS] ... [GEN_DESC] ...` string per title."""

    name: str
    version: str

    def describe(self, titles: Sequence[str], attributes: pd.DataFrame) -> list[str]:
        """`attributes` holds the SIT columns (brand, color, ...) aligned with `titles`."""
        ...


def describer_key(generator: DescriptionGenerator) -> str:
    """Identity of a generator's outputs (name and version), for cache keys."""
    return f"{generator.name}@{generator.version}"


def format_generated(tags: Sequence[str], description: str) -> str:
    return f"[GEN_TAGS] {', '.join(tags)} [GEN_DESC] {description}"


def _records(attributes: pd.DataFrame | None, n: int) -> list[dict[str, str]]:
    if attributes is None:
        return [dict.fromkeys(ATTRIBUTE_KEYS, "") for _ in range(n)]
    if len(attributes) != n:
        raise ValueError(f"{len(attributes)} attribute rows for {n} titles")
    table = attributes.reindex(columns=list(ATTRIBUTE_KEYS), fill_value="").fillna("")
    return table.astype(str).to_dict("records")


# -------------------------------------------------------------------------- offline


def display_brand(brand: str) -> str:
    """Brand as written in a sentence: short ones upper-cased (LG, H&M), else capitalised words."""
    return brand.upper() if len(brand) <= 3 else string.capwords(brand)


def offline_tags(attrs: dict[str, str]) -> list[str]:
    """Tags in the order product type, colour, material, style, brand, size ("product" if none)."""
    tags = [attrs.get(k, "") for k in ("product_type", "color", "material", "style", "brand", "size")]
    return [t for t in tags if t] or ["product"]


def offline_description(attrs: dict[str, str], title: str) -> str:
    """One English sentence from the attributes, e.g. "A red cotton t-shirt by Nike in size M."

    Order: style, colour, material, product type (or "product"), "by <brand>", then the size
    ("in size M" for letter and plain numeric sizes, "(128gb)" for measured ones). With no
    attribute at all the sentence quotes the title's first eight words:
    'A product titled "Camiseta básica ...".' (or "A product." for an empty title).
    """
    if not any(attrs.get(k) for k in ATTRIBUTE_KEYS):
        words = title.replace('"', "").split()[:8]
        return f'A product titled "{" ".join(words)}".' if words else "A product."
    phrase = " ".join(v for v in (attrs.get("style"), attrs.get("color"), attrs.get("material"),
                                  attrs.get("product_type") or "product") if v)
    sentence = ("An " if phrase[0].lower() in "aeiou" else "A ") + phrase
    if attrs.get("brand"):
        sentence += f" by {display_brand(attrs['brand'])}"
    size = attrs.get("size", "")
    if size == "one size":
        sentence += " in one size"
    elif _LETTER_SIZE.match(size):
        sentence += f" in size {size}"
    elif size:
        sentence += f" ({size})"
    return sentence + "."


class OfflineDescriber:
    """Deterministic generator that needs no model: tags and a sentence from the attributes."""

    name = "offline"
    version = "1"

    def describe(self, titles: Sequence[str], attributes: pd.DataFrame) -> list[str]:
        return [format_generated(offline_tags(a), offline_description(a, str(t)))
                for t, a in zip(titles, _records(attributes, len(titles)), strict=True)]


# ------------------------------------------------------------------------------ LLM


def _clean(text: str) -> str:
    return _SPACES.sub(" ", _MARKERS.sub(" ", text)).strip()


def parse_generation(generated: str, attrs: dict[str, str], title: str) -> str:
    """Turn a model's continuation of "[GEN_TAGS]" into the exact output shape.

    With a "[GEN_DESC]" marker: tags before it, description after it (first line, at most two
    sentences). Without one the first non-empty line becomes the description. Missing tags come
    from the attributes and a missing description from `offline_description`.
    """
    head, marker, tail = generated.partition("[GEN_DESC]")
    if marker:
        tag_text, desc_text = head.strip().split("\n", 1)[0], tail.strip().split("\n", 1)[0]
    else:
        lines = [line for line in generated.splitlines() if _clean(line)]
        tag_text, desc_text = "", lines[0] if lines else ""
    tags = list(dict.fromkeys(t for t in (_clean(p) for p in tag_text.split(",")) if t))
    description = " ".join(_SENTENCE_END.split(_clean(desc_text))[:2])[:_MAX_DESC_CHARS].strip()
    return format_generated(tags[:_MAX_TAGS] or offline_tags(attrs),
                            description or offline_description(attrs, title))


def resolve_device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype != "auto":
        return getattr(torch, dtype)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


class LLMDescriber:
    """DG with a causal LM (Hugging Face id or local path): batched greedy generation.

    The prompt (`texts/dg_prompt_v1.txt`) goes through the tokenizer's chat template when it has
    one and is followed by "[GEN_TAGS]", so the model continues the required format; whatever it
    writes is coerced into that format by `parse_generation`. The model loads on first use.
    """

    def __init__(self, model: str, *, batch_size: int = 8, max_new_tokens: int = 64,
                 device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False) -> None:
        self.model_id = model
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.device = device
        self.dtype = dtype
        self.trust_remote_code = trust_remote_code
        self.template = load_text(DG_PROMPT)
        digest = hashlib.sha256(self.template.encode("utf-8")).hexdigest()[:8]
        self.name = f"llm:{model}"
        self.version = f"{DG_PROMPT}-{digest}-greedy{max_new_tokens}"
        self._model: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(
                self.model_id, trust_remote_code=self.trust_remote_code)
            device = resolve_device(self.device)
            model = AutoModelForCausalLM.from_pretrained(
                self.model_id, dtype=resolve_dtype(self.dtype, device),
                trust_remote_code=self.trust_remote_code)
        except OSError as error:
            raise HarnessError(f"components.DG.model: cannot load {self.model_id!r}: "
                               f"{str(error).splitlines()[0]}") from None
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise HarnessError(f"components.DG.model: tokenizer of {self.model_id!r} has "
                                   "neither a pad nor an eos token")
            tokenizer.pad_token = tokenizer.eos_token
        self._tokenizer, self._model = tokenizer, model.to(device).eval()

    def prompt(self, title: str, attrs: dict[str, str]) -> str:
        """The full text the model continues (ends with "[GEN_TAGS]")."""
        if self._tokenizer is None:
            self._load()
        known = ", ".join(f"{k}: {attrs[k]}" for k in ATTRIBUTE_KEYS if attrs.get(k)) or "none"
        message = self.template.format(title=title, attributes=known)
        if getattr(self._tokenizer, "chat_template", None):
            text = self._tokenizer.apply_chat_template(
                [{"role": "user", "content": message}], tokenize=False, add_generation_prompt=True)
        else:
            text = message + "\n"
        return text + "[GEN_TAGS]"

    def generate(self, prompts: Sequence[str]) -> list[str]:
        """Greedy continuations of `prompts` (decoded new tokens), `batch_size` at a time with
        left padding."""
        import torch
        from transformers import GenerationConfig

        if self._model is None:
            self._load()
        tokenizer, model = self._tokenizer, self._model
        # Chat models often end a turn with a token other than the tokenizer's eos.
        eos = getattr(model.generation_config, "eos_token_id", None) or tokenizer.eos_token_id
        config = GenerationConfig(max_new_tokens=self.max_new_tokens, do_sample=False,
                                  pad_token_id=tokenizer.pad_token_id, eos_token_id=eos)
        plain = not getattr(tokenizer, "chat_template", None)
        # Batches of similar lengths pad less; outputs go back to the input order.
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        outputs = [""] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            batch = tokenizer([prompts[i] for i in chunk], return_tensors="pt", padding=True,
                              add_special_tokens=plain).to(model.device)
            with torch.inference_mode():
                generated = model.generate(**batch, generation_config=config)
            decoded = tokenizer.batch_decode(generated[:, batch["input_ids"].shape[1]:],
                                             skip_special_tokens=True)
            for i, text in zip(chunk, decoded, strict=True):
                outputs[i] = text
        return outputs

    def describe(self, titles: Sequence[str], attributes: pd.DataFrame) -> list[str]:
        records = _records(attributes, len(titles))
        outputs = self.generate([self.prompt(str(t), a) for t, a in zip(titles, records, strict=True)])
        return [parse_generation(out, a, str(t))
                for out, a, t in zip(outputs, records, titles, strict=True)]


# ---------------------------------------------------------------------------- running


def make_describer(config: Any, *, device: str = "auto", dtype: str = "auto",
                   trust_remote_code: bool = False) -> DescriptionGenerator:
    """The generator `components.DG` asks for (`config` is a DGConfig); the LLM runs on the
    sweep's `model.device` / `model.dtype`."""
    if config.generator == "offline":
        return OfflineDescriber()
    return LLMDescriber(str(config.model), batch_size=config.batch_size,
                        max_new_tokens=config.max_new_tokens, device=device, dtype=dtype,
                        trust_remote_code=trust_remote_code)


def generate_descriptions(titles: Sequence[str] | pd.Series, attributes: pd.DataFrame | None, *,
                          generator: DescriptionGenerator,
                          cache: dict[tuple[str, str], str] | None = None) -> list[str]:
    """One `[GEN_TAGS] ... [GEN_DESC] ...` string per title, each distinct title generated once.

    `attributes` rows align with `titles` (SIT columns; None: no attributes). `cache` maps
    (describer_key(generator), title) -> output and is filled in place, so a caller can share it
    across calls; the on-disk cache across sweeps is the stage cache's job.
    """
    texts = ["" if t is None or t is pd.NA or (isinstance(t, float) and t != t) else str(t)
             for t in titles]
    records = _records(attributes, len(texts))
    key = describer_key(generator)
    cache = {} if cache is None else cache
    first: dict[str, int] = {}
    for i, text in enumerate(texts):
        first.setdefault(text, i)
    todo = [t for t in first if (key, t) not in cache]
    if todo:
        todo_attrs = pd.DataFrame([records[first[t]] for t in todo], columns=list(ATTRIBUTE_KEYS))
        outputs = generator.describe(todo, todo_attrs)
        if len(outputs) != len(todo):
            raise RuntimeError(f"{key} returned {len(outputs)} descriptions for {len(todo)} titles")
        cache.update(((key, t), out) for t, out in zip(todo, outputs, strict=True))
    return [cache[(key, t)] for t in texts]


__all__ = [
    "DescriptionGenerator", "LLMDescriber", "OfflineDescriber", "describer_key",
    "display_brand", "format_generated", "generate_descriptions", "make_describer", "resolve_device",
    "resolve_dtype",
    "offline_description", "offline_tags", "parse_generation",
]

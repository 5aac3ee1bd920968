"""TR, Translation: the query translated to English before any other query component sees it.

Two translators share one protocol (`translate(texts, languages) -> texts`):

* `OfflineTranslator` (the default): word by word with the built-in benchmark's lexicon
  (`harness/data/lexicon/*.yaml`). Every non-English surface form of a product type, colour,
  material, the size word and "material link + material" ("de algodón") of the row's language is
  replaced by its English word; everything else (brands, sizes, fillers, typos, symbols, English
  words) is kept as written. Leftmost-longest match over the lexicon forms: with word boundaries
  in scripts written with spaces, as substrings in those written without (kana, CJK, Thai), so
  "赤いTシャツ" and "เสื้อยืดสีแดง" are translated too. Product words become the English word the
  task's English queries use: the category leaf name for QC ("t-shirts"), the item-title word for
  QI ("t-shirt"). No model, deterministic, instant; it only knows the built-in benchmark's words.
* `TransformersTranslator`: any Hugging Face seq2seq model (the query as input, e.g. an opus-mt
  "mul-en" model) or causal LM (a "Translate ... to English" prompt, through the chat template
  when the tokenizer has one; only the new tokens are decoded). Batched greedy decoding on the
  sweep's `model.device` / `model.dtype`; loaded on first use, i.e. only when the stage is not in
  the stage cache.

English rows are never translated, and each distinct (query, language) is translated once.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

import pandas as pd
from pydantic import Field, model_validator

from harness.components.base import Component, Context, Strict
from harness.components.describe import resolve_device, resolve_dtype
from harness.errors import HarnessError

ENGLISH = "en"
# Scripts written without spaces between words (kana, CJK, Thai): forms match as substrings.
_UNSPACED = re.compile(r"[\u0e00-\u0e7f\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\uff66-\uff9f]")
_SPACES = re.compile(r"\s+")
TRANSLATE_PROMPT = ("Translate this e-commerce search query to English. Reply with the English "
                    "translation only.\nQuery: {query}\nEnglish:")
# Special tokens that make multilingual seq2seq models (NLLB, M2M100, mBART-50) write English.
_ENGLISH_TOKENS = ("eng_Latn", "__en__", "en_XX", ">>eng<<", ">>en<<")


class TRConfig(Strict):
    # offline: the built-in benchmark's lexicon, word by word; transformers: a model (`model`).
    translator: Literal["offline", "transformers"] = "offline"
    # Hugging Face id or local path of a seq2seq or causal LM (translator: transformers).
    model: str | None = None
    # Queries per generate() call (speed only: not part of the cache key).
    batch_size: Annotated[int, Field(gt=0)] = 16
    max_new_tokens: Annotated[int, Field(gt=0)] = 64

    @model_validator(mode="after")
    def _model_for_transformers(self) -> TRConfig:
        if self.translator == "transformers" and not self.model:
            raise ValueError("components.TR.model is required when translator is 'transformers'")
        return self


@runtime_checkable
class Translator(Protocol):
    """Translates queries to English, one output per input."""

    name: str
    version: str

    def translate(self, texts: Sequence[str], languages: Sequence[str]) -> list[str]:
        """`languages` holds the competition language code of each text."""
        ...


# -------------------------------------------------------------------------- offline


@cache
def lexicon_digest() -> str:
    """sha256 of the lexicon files (their content decides the offline translations)."""
    folder = resources.files("harness.data") / "lexicon"
    digest = hashlib.sha256()
    for name in ("taxonomy", "products", "attributes", "languages"):
        digest.update((folder / f"{name}.yaml").read_bytes())
    return digest.hexdigest()


def _fold(text: str) -> str:
    return unicodedata.normalize("NFC", text).casefold()


@cache
def lexicon_forms(task: str) -> dict[str, dict[str, str]]:
    """Language -> casefolded surface form -> English word, from the benchmark's lexicon.

    Product words map to the English word of `task`'s English queries (QC: the leaf name, QI:
    the title word lower-cased). A form that two entries share keeps the first of colours,
    materials, products (Vietnamese "vàng" is yellow, not gold).
    """
    from harness.data.synth import load_lexicon

    lexicon = load_lexicon()
    tables: dict[str, dict[str, str]] = {}
    for language, spec in lexicon.languages.items():
        if language == ENGLISH:
            continue
        table: dict[str, str] = {}

        def add(form: str, english: str, table: dict[str, str] = table) -> None:
            if form.strip():
                table.setdefault(_fold(form.strip()), english)

        for kind in ("colour", "material"):
            for key, words in lexicon.words[kind].items():
                for word in words[language]:
                    add(word, key)
                    if kind == "material" and spec.get("material_link"):
                        add(f"{spec['material_link']} {word}", key)
        for leaf in lexicon.leaves:
            english = leaf.name if task == "QC" else leaf.title.lower()
            for word in leaf.words[language]:
                add(word, english)
        if spec.get("size_word"):
            add(str(spec["size_word"]), str(lexicon.languages[ENGLISH]["size_word"]))
        tables[language] = table
    return tables


def _form_regex(forms: Sequence[str]) -> re.Pattern[str] | None:
    """Leftmost-longest alternation: longer forms first; word boundaries for spaced scripts."""
    parts = [re.escape(form) if _UNSPACED.search(form) else rf"(?<!\w){re.escape(form)}(?!\w)"
             for form in sorted(forms, key=lambda f: (-len(f), f))]
    return re.compile("|".join(parts)) if parts else None


def _joins(char: str) -> bool:
    """Whether an English word next to `char` needs a space in between (letters, marks, digits)."""
    return unicodedata.category(char)[0] in "LMN"


class OfflineTranslator:
    """Word-by-word translation with the built-in benchmark's lexicon (see the module docstring)."""

    name = "offline"

    def __init__(self, task: str = "QC") -> None:
        self.task = task
        self.forms = lexicon_forms(task)
        self.version = f"1-{lexicon_digest()[:12]}-{'category' if task == 'QC' else 'title'}"
        self._regex = {language: _form_regex(list(table)) for language, table in self.forms.items()}
        # A language the lexicon lacks gets every language's forms (the first language wins).
        union: dict[str, str] = {}
        for table in self.forms.values():
            for form, english in table.items():
                union.setdefault(form, english)
        self._union, self._union_regex = union, _form_regex(list(union))

    def translate_one(self, text: str, language: str) -> str:
        """`text` (written in `language`) with every lexicon word of that language in English."""
        if language == ENGLISH:
            return text
        table = self.forms.get(language, self._union)
        regex = self._regex.get(language, self._union_regex)
        if regex is None:
            return text
        text = unicodedata.normalize("NFC", text)
        # Match on the casefolded text; `where[i]` is the original index of folded char i.
        folded, where = [], []
        for i, char in enumerate(text):
            piece = char.casefold()
            folded.append(piece)
            where.extend([i] * len(piece))
        folded_text = "".join(folded)
        out, last = [], 0
        for match in regex.finditer(folded_text):
            start, end = where[match.start()], where[match.end() - 1] + 1
            out.append(text[last:start])
            before = " " if start > 0 and _joins(text[start - 1]) else ""
            after = " " if end < len(text) and _joins(text[end]) else ""
            out.append(before + table[match.group(0)] + after)
            last = end
        if last == 0:
            return text
        out.append(text[last:])
        return _SPACES.sub(" ", "".join(out)).strip()

    def translate(self, texts: Sequence[str], languages: Sequence[str]) -> list[str]:
        return [self.translate_one(str(t), str(lg)) for t, lg in zip(texts, languages, strict=True)]


# --------------------------------------------------------------------- transformers


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


class TransformersTranslator:
    """TR with a Hugging Face model (id or local path): seq2seq or causal LM, batched greedy."""

    name = "transformers"

    def __init__(self, model: str, *, batch_size: int = 16, max_new_tokens: int = 64,
                 device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False) -> None:
        self.model_id = model
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.device = device
        self.dtype = dtype
        self.trust_remote_code = trust_remote_code
        prompt = hashlib.sha256(TRANSLATE_PROMPT.encode("utf-8")).hexdigest()[:8]
        self.version = f"1-prompt{prompt}-greedy{max_new_tokens}"
        self._model: Any = None
        self._tokenizer: Any = None
        self.seq2seq = False

    def _fail(self, reason: str) -> HarnessError:
        return HarnessError(f"components.TR.model: cannot load {self.model_id!r}: {reason}")

    def _load(self) -> None:
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoModelForSeq2SeqLM,
            AutoTokenizer,
        )

        trust = self.trust_remote_code
        try:
            config = AutoConfig.from_pretrained(self.model_id, trust_remote_code=trust)
            self.seq2seq = bool(getattr(config, "is_encoder_decoder", False))
            tokenizer = AutoTokenizer.from_pretrained(self.model_id, trust_remote_code=trust)
            device = resolve_device(self.device)
            auto = AutoModelForSeq2SeqLM if self.seq2seq else AutoModelForCausalLM
            model = auto.from_pretrained(self.model_id, dtype=resolve_dtype(self.dtype, device),
                                         trust_remote_code=trust)
        except (OSError, ValueError, KeyError) as error:
            raise self._fail(_first_line(str(error)) or type(error).__name__) from None
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise self._fail("its tokenizer has neither a pad nor an eos token")
            tokenizer.pad_token = tokenizer.eos_token
        # Causal LMs continue the prompt: pad on the left so every row ends where generation starts.
        tokenizer.padding_side = "right" if self.seq2seq else "left"
        self._tokenizer, self._model = tokenizer, model.to(device).eval()

    def prompt(self, text: str) -> str:
        """What the model reads: the query itself (seq2seq) or the translation prompt (causal)."""
        if self._tokenizer is None:
            self._load()
        if self.seq2seq:
            return text
        message = TRANSLATE_PROMPT.format(query=text)
        if getattr(self._tokenizer, "chat_template", None):
            return self._tokenizer.apply_chat_template(
                [{"role": "user", "content": message}], tokenize=False, add_generation_prompt=True)
        return message

    def _english_token(self) -> int | None:
        vocab = self._tokenizer.get_vocab()
        return next((vocab[t] for t in _ENGLISH_TOKENS if t in vocab), None)

    def generate(self, prompts: Sequence[str]) -> list[str]:
        """Greedy outputs (new tokens only), `batch_size` prompts at a time, in input order."""
        import torch
        from transformers import GenerationConfig

        if self._model is None:
            self._load()
        tokenizer, model = self._tokenizer, self._model
        eos = getattr(model.generation_config, "eos_token_id", None) or tokenizer.eos_token_id
        options: dict[str, Any] = {}
        if self.seq2seq and (english := self._english_token()) is not None:
            options["forced_bos_token_id"] = english
        config = GenerationConfig(max_new_tokens=self.max_new_tokens, do_sample=False,
                                  pad_token_id=tokenizer.pad_token_id, eos_token_id=eos, **options)
        special = self.seq2seq or not getattr(tokenizer, "chat_template", None)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        outputs = [""] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            batch = tokenizer([prompts[i] for i in chunk], return_tensors="pt", padding=True,
                              add_special_tokens=special).to(model.device)
            with torch.inference_mode():
                generated = model.generate(**batch, generation_config=config)
            new = generated if self.seq2seq else generated[:, batch["input_ids"].shape[1]:]
            for i, text in zip(chunk, tokenizer.batch_decode(new, skip_special_tokens=True),
                               strict=True):
                outputs[i] = text
        return outputs

    def translate(self, texts: Sequence[str], languages: Sequence[str]) -> list[str]:
        """The first non-empty line of each output; the query itself when the output is empty."""
        texts = [str(t) for t in texts]
        outputs = self.generate([self.prompt(t) for t in texts])
        return [_first_line(out) or text for out, text in zip(outputs, texts, strict=True)]


# ---------------------------------------------------------------------------- running


def make_translator(settings: TRConfig, *, task: str = "QC", device: str = "auto",
                    dtype: str = "auto", trust_remote_code: bool = False) -> Translator:
    """The translator `components.TR` asks for; a model runs on `model.device` / `model.dtype`."""
    if settings.translator == "offline":
        return OfflineTranslator(task)
    return TransformersTranslator(str(settings.model), batch_size=settings.batch_size,
                                  max_new_tokens=settings.max_new_tokens, device=device,
                                  dtype=dtype, trust_remote_code=trust_remote_code)


def translate_queries(texts: Sequence[str], languages: Sequence[str], *,
                      translator: Translator) -> list[str]:
    """One English query per input: English rows as they are, each distinct (query, language)
    translated once."""
    pairs = [(str(t), str(lg)) for t, lg in zip(texts, languages, strict=True)]
    todo = list(dict.fromkeys(p for p in pairs if p[1] != ENGLISH))
    done: dict[tuple[str, str], str] = {}
    if todo:
        outputs = translator.translate([t for t, _ in todo], [lg for _, lg in todo])
        if len(outputs) != len(todo):
            raise RuntimeError(f"translator {translator.name} returned {len(outputs)} texts "
                               f"for {len(todo)} queries")
        done = dict(zip(todo, outputs, strict=True))
    return [done.get(p, p[0]) for p in pairs]


class Translation(Component):
    name = "TR"
    description = "Translation: the query translated to English"
    tasks = ("QC", "QI")
    stage = "query"
    # Before LT (20): LT tags the translated text with the row's `language` column, so the tag
    # still names the query's original language.
    order = 10
    settings = TRConfig
    reads = ("query_text", "language")
    # The category paths and item titles are English: a query in English shares words with its
    # targets in every language, seen in training or not, which is what makes a model trained on
    # six languages work on the others (the competition winner replaced the query, too).
    # Appending the translation to the original would double the query and keep words the model
    # cannot use for unseen languages; LT still tells it the original language.
    combine = "replace"

    def __init__(self) -> None:
        self._translators: dict[tuple, Translator] = {}

    def translator(self, settings: TRConfig, context: Context) -> Translator:
        """One translator per (settings, task, device, dtype): a model loads once per process
        (on its first translation, never here)."""
        model = context.config.model
        task = context.task if settings.translator == "offline" else ""
        key = (settings, task, model.device, model.dtype, model.trust_remote_code)
        if key not in self._translators:
            self._translators[key] = make_translator(
                settings, task=context.task, device=model.device, dtype=model.dtype,
                trust_remote_code=model.trust_remote_code)
        return self._translators[key]

    def key_settings(self, settings: TRConfig, context: Context) -> dict[str, Any]:
        # batch_size changes speed only, so it is not here (a cached translation stays valid).
        key: dict[str, Any] = {"translator": settings.translator, "model": settings.model}
        if settings.translator == "transformers":
            key["max_new_tokens"] = settings.max_new_tokens
            key["dtype"] = context.config.model.dtype  # bfloat16 and float32 translate differently
        key["translator_version"] = self.translator(settings, context).version
        return key

    def apply(self, frame: pd.DataFrame, settings: TRConfig, context: Context) -> pd.Series:
        translated = translate_queries(frame["query_text"].fillna("").astype(str).tolist(),
                                       frame["language"].astype(str).tolist(),
                                       translator=self.translator(settings, context))
        return pd.Series(translated, index=frame.index)


__all__ = [
    "OfflineTranslator", "TRConfig", "TransformersTranslator", "Translation", "Translator",
    "lexicon_forms", "make_translator", "translate_queries",
]

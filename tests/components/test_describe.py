import os
import re

import pandas as pd
import pytest

from harness.components.describe import (
    DescriptionGenerator,
    LLMDescriber,
    OfflineDescriber,
    describer_key,
    generate_descriptions,
    make_describer,
    parse_generation,
)
from harness.components.dg import DGConfig
from harness.components.tagging import extract_attributes, load_attribute_vocab

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SHAPE = re.compile(r"^\[GEN_TAGS\] [^\[\]\n]+ \[GEN_DESC\] [^\n]+$")
EMPTY = {k: "" for k in ("brand", "color", "size", "material", "product_type", "style")}


def attrs(**values):
    return pd.DataFrame([{**EMPTY, **values}])


def test_offline_exact_output_for_known_attributes():
    table = extract_attributes(pd.Series(["Nike Camiseta roja de algodón talla M"]),
                               vocab=load_attribute_vocab())
    out = OfflineDescriber().describe(["Nike Camiseta roja de algodón talla M"], table)
    assert out == ["[GEN_TAGS] t-shirt, red, cotton, nike, M "
                   "[GEN_DESC] A red cotton t-shirt by Nike in size M."]


@pytest.mark.parametrize(("values", "title", "expected"), [
    ({}, 'Camiseta "básica" de verano talla única muy cómoda y barata',
     '[GEN_TAGS] product [GEN_DESC] A product titled "Camiseta básica de verano talla única '
     'muy cómoda".'),
    ({}, "", "[GEN_TAGS] product [GEN_DESC] A product."),
    (dict(color="orange", product_type="mug", size="350ml"), "x",
     "[GEN_TAGS] mug, orange, 350ml [GEN_DESC] An orange mug (350ml)."),
    (dict(brand="lg"), "x", "[GEN_TAGS] lg [GEN_DESC] A product by LG."),
    (dict(brand="new balance", style="casual", product_type="sneakers", size="one size"), "x",
     "[GEN_TAGS] sneakers, casual, new balance, one size "
     "[GEN_DESC] A casual sneakers by New Balance in one size."),
])
def test_offline_fallbacks(values, title, expected):
    assert OfflineDescriber().describe([title], attrs(**values)) == [expected]


def test_parse_generation_coerces_any_output():
    row = {**EMPTY, "brand": "nike", "product_type": "shoes"}
    assert parse_generation(" shoes, Nike,  shoes [GEN_DESC] Running shoes. Light. Cheap.\nX",
                            row, "t") == \
        "[GEN_TAGS] shoes, Nike [GEN_DESC] Running shoes. Light."
    assert parse_generation("\n\nsome words\nmore", row, "t") == \
        "[GEN_TAGS] shoes, nike [GEN_DESC] some words"
    assert parse_generation("  ", row, "t") == \
        "[GEN_TAGS] shoes, nike [GEN_DESC] A shoes by Nike."


class Spy:
    """Counts the titles a generator is asked to describe."""

    def __init__(self, inner):
        self.inner, self.seen = inner, []
        self.name, self.version = inner.name, inner.version

    def describe(self, titles, attributes):
        self.seen += list(titles)
        return self.inner.describe(titles, attributes)


def test_generate_descriptions_dedupes_and_uses_cache():
    spy = Spy(OfflineDescriber())
    titles = ["Nike shoes"] * 5 + ["Adidas bag", None]
    table = extract_attributes(pd.Series(titles, dtype=object), vocab=load_attribute_vocab())
    cache: dict = {}
    out = generate_descriptions(titles, table, generator=spy, cache=cache)
    assert spy.seen == ["Nike shoes", "Adidas bag", ""]
    assert out[:5] == ["[GEN_TAGS] shoes, nike [GEN_DESC] A shoes by Nike."] * 5
    assert out[5] == "[GEN_TAGS] bag, adidas [GEN_DESC] A bag by Adidas."
    assert (describer_key(spy), "Adidas bag") in cache
    assert generate_descriptions(["Adidas bag"], table.iloc[[5]], generator=spy,
                                 cache=cache) == [out[5]]
    assert len(spy.seen) == 3
    assert describer_key(OfflineDescriber()) == "offline@1"


def test_make_describer():
    assert isinstance(make_describer(DGConfig()), OfflineDescriber)
    llm = make_describer(DGConfig(generator="llm", model="some/model", max_new_tokens=20,
                                  batch_size=4))
    assert isinstance(llm, LLMDescriber) and isinstance(llm, DescriptionGenerator)
    assert (llm.batch_size, llm.max_new_tokens, llm.name) == (4, 20, "llm:some/model")
    assert "greedy20" in llm.version


# ------------------------------------------------------------------- tiny random LLM


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    """A random Qwen2 model and a BPE tokenizer trained here; nothing is downloaded."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<eos>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator([
        "[GEN_TAGS] t-shirt, red, cotton [GEN_DESC] A red cotton t-shirt by Nike.",
        "Write English tags and a short English description for an e-commerce product.",
        "Nike Camiseta roja de algodón talla M. Sac à dos noir. ナイキ Tシャツ",
    ] * 3, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>",
                                        eos_token="<eos>", unk_token="<unk>")
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, intermediate_size=64,
                         max_position_embeddings=512, initializer_range=0.5,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    plain = tmp_path_factory.mktemp("tiny_plain")
    tokenizer.save_pretrained(plain)
    Qwen2ForCausalLM(config).save_pretrained(plain)
    chat = tmp_path_factory.mktemp("tiny_chat")
    tokenizer.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n"
                               "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")
    tokenizer.save_pretrained(chat)
    Qwen2ForCausalLM.from_pretrained(plain).save_pretrained(chat)
    return plain, chat


TITLES = ["Nike Camiseta roja de algodón talla M", "Sac à dos noir",
          "ナイキ Tシャツ 黒 サイズ L コットン, a rather long title to force padding", "x", "Nike"]


def test_llm_describer_batches_and_keeps_format(tiny_lm):
    plain, _ = tiny_lm
    table = extract_attributes(pd.Series(TITLES), vocab=load_attribute_vocab())
    one = LLMDescriber(str(plain), batch_size=1, max_new_tokens=8, device="cpu")
    three = LLMDescriber(str(plain), batch_size=3, max_new_tokens=8, device="cpu")
    prompts = [one.prompt(t, r) for t, r in zip(TITLES, table.to_dict("records"), strict=True)]
    assert prompts[0].endswith("\n[GEN_TAGS]") and "Product title: " + TITLES[0] in prompts[0]
    assert "Known attributes: brand: nike, color: red, size: M" in prompts[0]
    raw = one.generate(prompts)
    assert len(raw) == 5 and len(set(raw)) > 1          # real decoding, prompt-dependent
    assert three.generate(prompts) == raw                # left padding does not change greedy output
    out = three.describe(TITLES, table)
    assert len(out) == 5 and all(SHAPE.match(o) for o in out), out


def test_llm_describer_chat_template_and_dedupe(tiny_lm):
    _, chat = tiny_lm
    generator = LLMDescriber(str(chat), batch_size=2, max_new_tokens=6, device="cpu")
    prompt = generator.prompt("Nike", dict(EMPTY))
    assert prompt.startswith("<|user|>Write English tags")
    assert prompt.endswith("<|assistant|>[GEN_TAGS]")
    spy = Spy(generator)
    titles = ["Nike Camiseta"] * 5 + ["Sac à dos noir"]
    out = generate_descriptions(titles, None, generator=spy)
    assert spy.seen == ["Nike Camiseta", "Sac à dos noir"]
    assert len(set(out[:5])) == 1 and all(SHAPE.match(o) for o in out)

"""The built-in tiny model: cached BPE tokenizer, Qwen2 model, and base-model loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from harness.config import ModelConfig, TinyModelConfig
from harness.errors import HarnessError
from harness.learner import LoadedModel, ModelLoadError, load_base_model, tiny
from harness.learner.model import answer_token_id
from harness.learner.tiny import build_tiny_model, build_tiny_tokenizer

CORPUS = [f"Query: {adj} {noun}\nCategory: {cat}\n### Response:\n"
          for adj in ("red", "blue", "cheap", "large")
          for noun, cat in (("shoes", "clothing,shoes"), ("lamp", "home,lighting"),
                            ("phone", "electronics,phones"))]


def test_tokenizer_is_cached_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = build_tiny_tokenizer(CORPUS, vocab_size=500, cache_dir=tmp_path)
    entries = [p for p in tmp_path.iterdir()]
    assert len(entries) == 1 and entries[0].name.startswith("tiny-bpe-500-")
    assert (entries[0] / "tokenizer.json").is_file()

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained again instead of loading the cache")

    monkeypatch.setattr(tiny, "_train_tokenizer", no_training)
    second = build_tiny_tokenizer(iter(CORPUS), vocab_size=500, cache_dir=tmp_path)
    assert second("red shoes\n### Response:\nyes")["input_ids"] == \
        first("red shoes\n### Response:\nyes")["input_ids"]
    assert len(second) == len(first)
    with pytest.raises(AssertionError, match="trained again"):  # another corpus is another key
        build_tiny_tokenizer(CORPUS[:3], vocab_size=500, cache_dir=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [entries[0].name]  # no temp dir left behind


@pytest.mark.parametrize("vocab_size", [300, 2000])
def test_yes_and_no_are_single_tokens(tmp_path: Path, vocab_size: int) -> None:
    corpus = ["nothing here says the answer words; only ys, es, ns and os."] * 5
    tokenizer = build_tiny_tokenizer(corpus, vocab_size=vocab_size, cache_dir=tmp_path)
    yes = answer_token_id(tokenizer, "yes", name="tiny")
    no = answer_token_id(tokenizer, "no", name="tiny")
    assert yes != no
    assert tokenizer.convert_ids_to_tokens([yes, no]) == ["yes", "no"]
    assert len(tokenizer) <= vocab_size
    assert tokenizer.pad_token == tokenizer.eos_token == "<|endoftext|>"
    assert tokenizer.padding_side == "left"
    assert tokenizer.decode(tokenizer("Größe 42 — 赤い靴")["input_ids"]) == "Größe 42 — 赤い靴"


def test_answer_token_id_rejects_split_words() -> None:
    bare = Tokenizer(models.BPE())  # bytes only, no merges: "yes" is three tokens
    bare.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bare.add_tokens(list(pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bare)
    with pytest.raises(ModelLoadError, match="'yes' after .* is not a single token"):
        answer_token_id(tokenizer, "yes", name="bytes-only")


def test_tiny_model_size_and_seeded_init() -> None:
    config = TinyModelConfig()
    before = torch.get_rng_state()
    model = build_tiny_model(config, vocab_size=config.vocab_size)
    assert torch.equal(torch.get_rng_state(), before)  # global RNG untouched
    count = sum(p.numel() for p in model.parameters())
    assert 300_000 <= count <= 600_000
    assert model.dtype == torch.float32
    same = build_tiny_model(config, vocab_size=config.vocab_size)
    other = build_tiny_model(config.model_copy(update={"seed": 1}), vocab_size=config.vocab_size)
    weights = [p for p in model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(weights, same.parameters(), strict=True))
    assert not torch.equal(weights[0], next(other.parameters()))


def test_load_tiny_and_local_path(tmp_path: Path) -> None:
    loaded = load_base_model(model=ModelConfig(), corpus=CORPUS, cache_dir=tmp_path / "cache")
    assert isinstance(loaded, LoadedModel)
    assert (loaded.name, loaded.device.type, loaded.dtype) == ("tiny", "cpu", torch.float32)
    assert loaded.tokenizer.convert_ids_to_tokens([loaded.yes_id, loaded.no_id]) == ["yes", "no"]
    assert loaded.model.get_input_embeddings().num_embeddings == len(loaded.tokenizer)
    assert (tmp_path / "cache" / "tiny_tokenizer").is_dir()

    saved = tmp_path / "saved"
    loaded.model.save_pretrained(saved)
    loaded.tokenizer.save_pretrained(saved)
    again = load_base_model(model=ModelConfig(name=str(saved), dtype="float32"), corpus=None,
                            cache_dir=tmp_path / "cache")
    assert (again.yes_id, again.no_id) == (loaded.yes_id, loaded.no_id)
    ids = torch.tensor([loaded.tokenizer("Query: red lamp\n### Response:\n")["input_ids"]])
    with torch.inference_mode():
        assert torch.allclose(again.model(ids).logits, loaded.model(ids).logits, atol=1e-6)


def test_load_errors_are_one_line_harness_errors(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HarnessError, match="needs a text corpus"):
        load_base_model(model=ModelConfig(), corpus=None, cache_dir=tmp_path)
    with pytest.raises(ModelLoadError, match="model.name: cannot load 'no-such-org/no-such-model'") \
            as error:
        load_base_model(model=ModelConfig(name="no-such-org/no-such-model"), corpus=None,
                        cache_dir=tmp_path)
    assert "\n" not in str(error.value)
    with pytest.raises(ModelLoadError, match="model.device: invalid device 'gpu0'"):
        load_base_model(model=ModelConfig(device="gpu0"), corpus=CORPUS, cache_dir=tmp_path)
    with pytest.raises(ModelLoadError, match="folder without config.json"):
        load_base_model(model=ModelConfig(name=str(tmp_path)), corpus=None, cache_dir=tmp_path)

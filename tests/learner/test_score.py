"""Yes/no scoring: one forward pass, left padding, input order, batch-size invariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.config import LoraConfig, ModelConfig
from harness.learner import LoadedModel, load_base_model, score, score_yes_no
from harness.learner.score import (
    MIN_SHARED_PREFIX,
    batch_next_token_logits,
    encode_prompts,
    left_pad,
    shared_prefix_length,
)
from harness.learner.train import fresh_adapter

PROMPTS = [
    "Query: red shoes\nCategory: clothing,shoes\n### Response:\n",
    "Query: lamp\n### Response:\n",
    "Below is a query and a category. Answer yes or no.\nQuery: very cheap blue running shoes "
    "for children size 32\nCategory: sports,outdoor,camping,tents\n### Response:\n",
    "Query: phone\nCategory: electronics,phones\n### Response:\n",
    "Query: 赤い靴\nCategory: clothing,shoes\n### Response:\n",
    "Query: lamp\n### Response:\n",  # a duplicate
]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return load_base_model(model=ModelConfig(), corpus=PROMPTS * 3,
                           cache_dir=tmp_path_factory.mktemp("cache"))


def direct_p_yes(loaded: LoadedModel, ids: list[int]) -> float:
    """p(yes) from an unpadded single-row forward pass with full logits."""
    with torch.inference_mode():
        logits = loaded.model(torch.tensor([ids])).logits[0, -1]
    pair = torch.stack([logits[loaded.yes_id], logits[loaded.no_id]])
    return torch.softmax(pair, dim=0)[0].item()


def test_scores_equal_direct_computation(loaded: LoadedModel) -> None:
    expected = [direct_p_yes(loaded, loaded.tokenizer(p)["input_ids"]) for p in PROMPTS]
    got = score_yes_no(loaded, prompts=PROMPTS, batch_size=4, max_length=512)
    assert got.shape == (len(PROMPTS),) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert got[1] == got[5]
    assert np.all((got > 0) & (got < 1))
    assert np.ptp(got) > 1e-4  # the prompts really are scored differently


def test_batch_size_and_order_invariance(loaded: LoadedModel) -> None:
    one = score_yes_no(loaded, prompts=PROMPTS, batch_size=1, max_length=512)
    for batch_size in (2, 3, 64):
        np.testing.assert_allclose(
            score_yes_no(loaded, prompts=PROMPTS, batch_size=batch_size, max_length=512), one,
            atol=1e-5)
    reversed_scores = score_yes_no(loaded, prompts=PROMPTS[::-1], batch_size=3, max_length=512)
    np.testing.assert_allclose(reversed_scores[::-1], one, atol=1e-5)
    assert np.array_equal(score_yes_no(loaded, prompts=PROMPTS, batch_size=3, max_length=512),
                          score_yes_no(loaded, prompts=PROMPTS, batch_size=3, max_length=512))


def test_long_prompts_keep_their_end(loaded: LoadedModel) -> None:
    full = loaded.tokenizer(PROMPTS[2])["input_ids"]
    ids, truncated = encode_prompts(loaded, PROMPTS, max_length=12)
    assert truncated == sum(len(loaded.tokenizer(p)["input_ids"]) > 11 for p in PROMPTS) > 0
    assert ids[2].tolist() == full[-11:]
    got = score_yes_no(loaded, prompts=PROMPTS, batch_size=8, max_length=12)
    assert got[2] == pytest.approx(direct_p_yes(loaded, full[-11:]), abs=1e-5)


def test_token_ids_are_int32_arrays_across_encoding_chunks(loaded: LoadedModel,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    whole, _ = encode_prompts(loaded, PROMPTS, max_length=512)
    monkeypatch.setattr(score, "ENCODE_CHUNK", 2)
    chunked, _ = encode_prompts(loaded, PROMPTS, max_length=512)
    assert all(ids.dtype == np.int32 for ids in chunked)
    assert [ids.tolist() for ids in chunked] == [ids.tolist() for ids in whole] == \
        [loaded.tokenizer(p)["input_ids"] for p in PROMPTS]
    assert shared_prefix_length(chunked) == shared_prefix_length([ids.tolist() for ids in chunked])


def test_left_padding_layout() -> None:
    batch = left_pad([[5, 6, 7], [9]], pad_id=0, device=torch.device("cpu"))
    assert batch["input_ids"].tolist() == [[5, 6, 7], [0, 0, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert batch["position_ids"].tolist() == [[0, 1, 2], [1, 1, 0]]


def test_empty_input(loaded: LoadedModel) -> None:
    assert score_yes_no(loaded, prompts=[], batch_size=8, max_length=64).shape == (0,)


INSTRUCTION = ("Below is an instruction that describes a task. Decide whether the product category "
               "is relevant to the user's search query.\nAnswer with exactly one word: yes or no."
               "\n\n### Input:\n")
SHARED = [INSTRUCTION + p for p in PROMPTS] + [INSTRUCTION]


def test_shared_instruction_scores_equal_direct_computation(loaded: LoadedModel) -> None:
    """Rows that start with the same long instruction run it once per batch (its keys and values
    repeated for every row); the scores must still be each prompt's own forward pass."""
    ids = [loaded.tokenizer(p)["input_ids"] for p in SHARED]
    assert shared_prefix_length(ids) >= MIN_SHARED_PREFIX  # the shared path really runs
    expected = [direct_p_yes(loaded, row) for row in ids]
    for batch_size in (len(SHARED), 3):
        got = score_yes_no(loaded, prompts=SHARED, batch_size=batch_size, max_length=512)
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_shared_prefix_leaves_every_row_a_token_of_its_own() -> None:
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3, 4]]) == 2
    assert shared_prefix_length([[1, 2, 3], [1, 2, 4]]) == 2
    assert shared_prefix_length([[7, 2], [1, 2]]) == 0


def test_shared_prefix_gives_the_same_gradients(loaded: LoadedModel) -> None:
    """Training backpropagates through the shared part once; the gradients must equal those of
    the plain padded batch."""
    ids = [loaded.tokenizer(p)["input_ids"] for p in SHARED]
    pad = loaded.tokenizer.pad_token_id
    lora = LoraConfig(r=4, alpha=8, dropout=0.0, train_embeddings=True, train_lm_head=True)
    with fresh_adapter(loaded, lora=lora, seed=0) as model:
        grads = []
        for share in (False, True):
            model.zero_grad()
            logits = batch_next_token_logits(model, ids, pad_id=pad, device=loaded.device,
                                             share_prefix=share)
            logits[:, loaded.yes_id].sum().backward()
            grads.append(torch.cat([p.grad.flatten() for p in model.parameters()
                                    if p.grad is not None]))
        model.zero_grad()
    assert grads[0].abs().max() > 0
    torch.testing.assert_close(grads[1], grads[0], atol=1e-4, rtol=1e-4)


QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+"
                 r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def _trained_tokenizer(texts: list[str], *, qwen_regex: bool, bos: bool):
    """A byte-level BPE like the built-in one, or with Qwen2's pre-tokenizer (punctuation takes
    the line breaks after it), optionally adding a BOS token."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = (pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        if qwen_regex else pre_tokenizers.ByteLevel(add_prefix_space=False))
    backend.train_from_iterator(texts, trainer=trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<s>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if bos:
        backend.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", backend.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>" if bos else None)


@pytest.mark.parametrize(("qwen_regex", "bos"), [(False, False), (True, False), (True, True)])
def test_shared_instruction_is_encoded_once_with_the_same_ids(qwen_regex: bool, bos: bool,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    import pandas as pd

    from harness.components.prompts import build_prompts

    rows = pd.DataFrame({"query_text": [p.split("\n")[0] for p in PROMPTS] * 3,
                         "target_text": ["clothing,shoes", "lamps", "sports", "phones,cases",
                                         "靴", ""] * 3})
    prompts = (build_prompts(rows, task="QC", cot_version="v1") + build_prompts(rows, task="QC")
               + build_prompts(rows.iloc[:1], task="QI"))   # another head in the last chunk
    tokenizer = _trained_tokenizer(prompts, qwen_regex=qwen_regex, bos=bos)
    monkeypatch.setattr(score, "ENCODE_CHUNK", 18)   # each chunk: one head, then two
    ids, _ = encode_prompts(types.SimpleNamespace(tokenizer=tokenizer), prompts, max_length=4096)
    assert [i.tolist() for i in ids] == tokenizer(prompts)["input_ids"]
    assert not bos or all(i[0] == tokenizer.bos_token_id for i in ids)

"""LoRA training on the tiny model: it learns, adapters do not leak, failures surface early."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score

from harness.config import LoraConfig, ModelConfig, TrainingConfig
from harness.errors import ConfigError
from harness.learner import (
    LoadedModel,
    NonFiniteLossError,
    fresh_adapter,
    load_base_model,
    score_yes_no,
    train_lora,
)

CATEGORIES = {
    "shoes": "clothing,shoes", "shirt": "clothing,tops", "lamp": "home,lighting",
    "sofa": "home,furniture", "phone": "electronics,phones", "laptop": "electronics,computers",
    "apple": "food,fruit", "bread": "food,bakery", "ball": "sports,balls",
    "tent": "sports,camping", "doll": "toys,dolls", "puzzle": "toys,games",
}
ADJECTIVES = ["red", "blue", "cheap", "big", "small", "new", "green", "soft", "fast", "old"]
LORA = LoraConfig(r=16, alpha=16, dropout=0.0, train_embeddings=True, train_lm_head=True)
TRAINING = TrainingConfig(epochs=8, learning_rate=3e-3, batch_size=16, max_length=64)


def toy_rows(n: int, seed: int) -> tuple[list[str], list[int]]:
    """Label 1 when the category is the query product's own; half the rows match."""
    rng = random.Random(seed)
    nouns = list(CATEGORIES)
    prompts, labels = [], []
    for _ in range(n):
        noun = rng.choice(nouns)
        target = noun if rng.random() < 0.5 else rng.choice([x for x in nouns if x != noun])
        prompts.append(f"Query: {rng.choice(ADJECTIVES)} {noun}\n"
                       f"Category: {CATEGORIES[target]}\n### Response:\n")
        labels.append(int(noun == target))
    return prompts, labels


TRAIN = toy_rows(400, seed=1)
HELD_OUT = toy_rows(200, seed=2)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return load_base_model(model=ModelConfig(), corpus=TRAIN[0],
                           cache_dir=tmp_path_factory.mktemp("cache"))


def score(loaded: LoadedModel, prompts: list[str]) -> np.ndarray:
    return score_yes_no(loaded, prompts=prompts, batch_size=64, max_length=64)


@pytest.mark.slow
def test_learns_a_separable_toy_task(loaded: LoadedModel) -> None:
    truth = HELD_OUT[1]
    with fresh_adapter(loaded, lora=LORA, seed=0):
        untrained = score(loaded, HELD_OUT[0]) > 0.5
        result = train_lora(loaded, prompts=TRAIN[0], labels=TRAIN[1], training=TRAINING,
                            seed=0, progress=False)
        trained = score(loaded, HELD_OUT[0]) > 0.5
    assert accuracy_score(truth, untrained) < 0.65
    assert f1_score(truth, trained) > 0.85
    assert len(result.epoch_losses) == 8 and result.epoch_losses[-1] < 0.2
    assert len(result.step_losses) == 8 * math.ceil(400 / 16)
    assert result.truncated == 0 and result.seconds > 0 and result.examples_per_second > 0
    assert not loaded.model.training


@pytest.mark.slow
def test_adapters_do_not_leak_and_training_is_deterministic(loaded: LoadedModel) -> None:
    prompts = HELD_OUT[0][:40]
    base = score(loaded, prompts)
    state = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    short = TRAINING.model_copy(update={"epochs": 2})
    losses, scores = [], []
    for _ in range(2):
        with fresh_adapter(loaded, lora=LORA, seed=3):
            np.testing.assert_array_equal(score(loaded, prompts), base)  # B starts at zero
            result = train_lora(loaded, prompts=TRAIN[0][:200], labels=TRAIN[1][:200],
                                training=short, seed=3, progress=False)
            losses.append(result.step_losses)
            scores.append(score(loaded, prompts))
        assert loaded.peft_model is None
        np.testing.assert_array_equal(score(loaded, prompts), base)
    assert losses[0] == losses[1]
    np.testing.assert_array_equal(scores[0], scores[1])
    assert np.abs(scores[0] - base).max() > 0.01
    after = loaded.model.state_dict()
    assert after.keys() == state.keys()
    assert all(torch.equal(after[k], state[k]) for k in state)


def test_nested_adapters_restore_the_outer_one(loaded: LoadedModel) -> None:
    with fresh_adapter(loaded, lora=LORA, seed=0) as outer:
        (outer_name,) = outer.active_adapters
        assert loaded.model.lm_head.lora_A[outer_name] is not None  # train_lm_head adapts it
        with fresh_adapter(loaded, lora=LoraConfig(target_modules=["q_proj"]), seed=1) as inner:
            assert inner is outer and inner.active_adapters != [outer_name]
            trainable = [n for n, p in loaded.model.named_parameters() if p.requires_grad]
            assert trainable and all("q_proj" in n for n in trainable)
        assert outer.active_adapters == [outer_name]
        assert set(outer.peft_config) == {outer_name}
    assert loaded.peft_model is None
    with pytest.raises(ConfigError, match=r"lora: Target modules \{'nope'\} not found"):
        with fresh_adapter(loaded, lora=LoraConfig(target_modules=["nope"]), seed=0):
            pass
    assert loaded.peft_model is None


@pytest.mark.slow
def test_epoch_callback_fractional_epochs_and_accumulation(loaded: LoadedModel) -> None:
    prompts, labels = TRAIN[0][:96], TRAIN[1][:96]
    calls: list[tuple[int, float]] = []
    training = TRAINING.model_copy(update={"epochs": 2.5, "batch_size": 8,
                                           "gradient_accumulation": 2})
    with fresh_adapter(loaded, lora=LORA, seed=0):
        result = train_lora(loaded, prompts=prompts, labels=labels, training=training, seed=0,
                            on_epoch_end=lambda e, loss: calls.append((e, loss)), progress=False)
    assert [e for e, _ in calls] == [0, 1, 2]
    assert [loss for _, loss in calls] == result.epoch_losses
    assert all(math.isfinite(loss) for loss in result.epoch_losses + result.step_losses)
    assert len(result.step_losses) == 6 + 6 + 3  # 12 micro batches per epoch, then 6 of them

    class Stop(Exception):
        pass

    def stop(epoch: int, loss: float) -> None:
        calls.append((epoch, loss))
        raise Stop

    calls.clear()
    with fresh_adapter(loaded, lora=LORA, seed=0), pytest.raises(Stop):
        train_lora(loaded, prompts=prompts, labels=labels, training=training, seed=0,
                   on_epoch_end=stop, progress=False)
    assert [e for e, _ in calls] == [0]
    assert not loaded.model.training and loaded.peft_model is None


def test_non_finite_loss_is_raised(loaded: LoadedModel) -> None:
    blowup = TRAINING.model_copy(update={"learning_rate": 1e30, "warmup_ratio": 0.0,
                                         "scheduler": "constant", "epochs": 1})
    with fresh_adapter(loaded, lora=LORA, seed=0), pytest.raises(NonFiniteLossError, match="nan|inf"):
        train_lora(loaded, prompts=TRAIN[0][:64], labels=TRAIN[1][:64], training=blowup, seed=0,
                   progress=False)
    assert loaded.peft_model is None and not loaded.model.training


def test_truncation_checkpointing_and_bad_input(loaded: LoadedModel) -> None:
    training = TRAINING.model_copy(update={"epochs": 0.25, "max_length": 10,
                                           "gradient_checkpointing": True})
    with fresh_adapter(loaded, lora=LORA, seed=0):
        result = train_lora(loaded, prompts=TRAIN[0][:32], labels=TRAIN[1][:32],
                            training=training, seed=0, progress=False)
        assert result.truncated == 32 and len(result.step_losses) == 1
        assert not loaded.model.is_activation_checkpointing and not loaded.model.training
        with pytest.raises(ValueError, match="as many labels"):
            train_lora(loaded, prompts=TRAIN[0][:3], labels=[1], training=training, seed=0)
        with pytest.raises(ValueError, match="0 or 1"):
            train_lora(loaded, prompts=TRAIN[0][:2], labels=[1, 2], training=training, seed=0)
    with pytest.raises(RuntimeError, match="fresh_adapter"):
        train_lora(loaded, prompts=TRAIN[0][:2], labels=[1, 0], training=training, seed=0)

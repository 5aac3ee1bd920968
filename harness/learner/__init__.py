"""The learner: base model loading (built-in tiny model, Hugging Face id or local path), LoRA
adapters that one base model can host trial after trial, training on the answer token, and
yes/no scoring from next-token logits."""

from harness.learner.model import LoadedModel, ModelLoadError, load_base_model
from harness.learner.score import score_yes_no
from harness.learner.train import NonFiniteLossError, TrainResult, fresh_adapter, train_lora

__all__ = [
    "LoadedModel", "ModelLoadError", "NonFiniteLossError", "TrainResult", "fresh_adapter",
    "load_base_model", "score_yes_no", "train_lora",
]

"""Competition-format data: constants shared by the loader, the generator and the components."""

from __future__ import annotations

TASKS = ("QC", "QI")
SPLITS = ("train", "dev", "test")
LANGUAGES = ("en", "es", "fr", "ja", "ko", "pt", "th", "de", "it", "pl", "ar", "id", "vn")

# Which languages appear in which split of the real competition (docs/architecture.md, "Data format").
TRAIN_LANGUAGES = {
    "QC": ("en", "es", "fr", "ja", "ko", "pt"),
    "QI": ("en", "es", "fr", "ja", "ko", "pt", "th"),
}
EVAL_LANGUAGES = {
    "QC": ("en", "es", "fr", "ja", "ko", "pt", "ar", "de", "it", "pl"),
    "QI": ("en", "es", "fr", "ja", "ko", "pt", "th", "ar", "de", "it", "pl", "vn", "id"),
}

TARGET_COLUMN = {"QC": "category_path", "QI": "item_title"}


def target_column(task: str) -> str:
    """The text a query is compared with: the category path (QC) or the item title (QI)."""
    return TARGET_COLUMN[task]


def split_file_name(split: str, task: str) -> str:
    """`train_QC.txt`, `dev_QI.txt`, ... as in the competition."""
    return f"{split}_{task}.txt"

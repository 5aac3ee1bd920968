"""LT, Language Tagging: prefix the query with `[LANG=xx] ` (the DILAB reference, exactly)."""

from __future__ import annotations

import pandas as pd

from harness.components.base import Component, Context, NoSettings
from harness.components.tagging import language_tag
from harness.data import LANGUAGES


class LanguageTagging(Component):
    name = "LT"
    description = "Language Tagging: `[LANG=xx] ` before the query"
    stage = "query"
    order = 20
    reads = ("query_text", "language")

    def apply(self, frame: pd.DataFrame, settings: NoSettings, context: Context) -> pd.Series:
        return language_tag(frame["query_text"], frame["language"])

    def markers(self) -> list[str]:
        return [" ".join(f"[LANG={language}]" for language in LANGUAGES)]

"""HCT, Hierarchical Category Tagging: `a,b,c` -> `[D1] a [/D1] [D2] b [/D2] [D3] c [/D3]`."""

from __future__ import annotations

from typing import Literal

import pandas as pd

from harness.components.base import Component, Context, Strict
from harness.components.tagging import hierarchical_category_tag


class HCTConfig(Strict):
    # smart: split only on commas not followed by a space; reference: split on every comma.
    split: Literal["smart", "reference"] = "smart"


class HierarchicalCategoryTagging(Component):
    name = "HCT"
    description = "Hierarchical Category Tagging: one `[Dn] ... [/Dn]` block per level"
    tasks = ("QC",)
    stage = "target"
    order = 10
    settings = HCTConfig
    reads = ("target_text",)

    def apply(self, frame: pd.DataFrame, settings: HCTConfig, context: Context) -> pd.Series:
        return hierarchical_category_tag(frame["target_text"], mode=settings.split)

    def markers(self) -> list[str]:
        return [" ".join(f"[D{i}] x [/D{i}]" for i in range(1, 9))]

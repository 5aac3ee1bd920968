"""PLACEBO: a prompt change that carries no information about relevance.

Every query gets the same fixed words appended, whatever its row, so the switch cannot tell the
model anything; any "effect" it shows is the noise floor of changing a prompt (a different
tokenisation, a different optimisation path). Put it in a design beside real components: a
report whose significance marker fires on PLACEBO more often than 5% of the time is
overconfident (`bench/calibration.py` measures exactly that).
"""

from __future__ import annotations

import pandas as pd
from pydantic import Field

from harness.components.base import Component, Context, Strict


class PlaceboConfig(Strict):
    # The same for every row: no information.
    text: str = Field(default="(search query)", min_length=1)


class Placebo(Component):
    name = "PLACEBO"
    description = "Placebo: the same uninformative words after every query"
    stage = "query"
    order = 90  # after every real query component
    settings = PlaceboConfig
    reads = ()
    combine = "append"

    # No markers: the built-in tokenizer is not retrained for it (a new marker would change every
    # trial's tokenisation, placebo or not); its words are split with the existing merges.

    def apply(self, frame: pd.DataFrame, settings: PlaceboConfig, context: Context) -> pd.Series:
        return pd.Series(settings.text, index=frame.index)

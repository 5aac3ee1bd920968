"""Pipeline components and their registry, in pipeline order.

Each component is one module (its settings, tasks, stage, order, cache-key settings and the one
function that applies it); `REGISTRY` lists them. Everything else — the config schema, designs,
trial keys, MLflow params, the tokenizer's markers, the `tag` command and the report — takes the
component list from here. See docs/architecture.md, "How to add a component".
"""

from harness.components import cot, dg, hct, icl, lt, placebo, qr, sit, tr
from harness.components.base import Component, Context, PromptParts, Registry, RowsResult

REGISTRY = Registry([
    qr.QualityRefinement(),
    tr.Translation(),
    lt.LanguageTagging(),
    hct.HierarchicalCategoryTagging(),
    sit.SemanticItemTagging(),
    dg.DescriptionGeneration(),
    icl.InContextLearning(),
    cot.ChainOfThought(),
    placebo.Placebo(),
])

__all__ = ["REGISTRY", "Component", "Context", "PromptParts", "Registry", "RowsResult"]

"""Ablation harness for multilingual LLM relevance pipelines (QC / QI yes-no relevance)."""

__version__ = "0.1.0"

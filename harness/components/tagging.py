"""Text tagging components: Language Tagging (LT), Hierarchical Category Tagging (HCT) and
Semantic Item Tagging (SIT).

LT and HCT follow the DILAB reference rules exactly (docs/architecture.md, "Reference semantics") (HCT's `reference` split) with a better default
split for category level names that contain ", ". SIT looks up brand, colour, size, material,
product type and style in a YAML vocabulary (`vocab/attributes.yaml`, schema in its header) with
one compiled regular expression per attribute, and adds the leaf category of the query from the
QC training data when the same query occurs there.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml

from harness.errors import ConfigError

SplitMode = Literal["smart", "reference"]

ATTRIBUTE_KEYS = ("brand", "color", "size", "material", "product_type", "style")
BUILTIN_VOCAB = Path(__file__).parent / "vocab" / "attributes.yaml"

_SMART_SPLIT = re.compile(r",(?! )")
_SPACES = re.compile(r"\s+")
# Scripts written without spaces between words (CJK, kana, Hangul, Thai): substring matching.
_UNSPACED = re.compile(r"[\u0e00-\u0e7f\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u3400-\u9fff"
                       r"\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f]")
_GROUP_NAME = re.compile(r"\(\?P([<=])(\w+)")


# ------------------------------------------------------------------------------ LT / HCT


def language_tag(queries: pd.Series, languages: pd.Series) -> pd.Series:
    """LT: `"[LANG=" + language + "] " + origin_query` for every row."""
    lang = languages.fillna("").astype(str).to_numpy()
    query = queries.fillna("").astype(str).to_numpy()
    return pd.Series(["[LANG=" + lg + "] " + q for lg, q in zip(lang, query, strict=True)],
                     index=queries.index)


def split_category_path(path: str, *, mode: SplitMode = "smart") -> list[str]:
    """Levels of a category path, top level first.

    `reference` splits on every comma and strips each part (as the DILAB scripts do, cutting
    level names like "flour, baking and cooking" in two); `smart` splits only on commas that are
    not followed by a space, strips the parts and drops empty ones.
    """
    if mode == "reference":
        return [part.strip() for part in path.split(",")]
    if mode != "smart":
        raise ValueError(f"unknown split mode {mode!r}")
    return [part for part in (p.strip() for p in _SMART_SPLIT.split(path)) if part]


def _hct_one(path: str, mode: SplitMode) -> str:
    return " ".join(f"[D{i}] {part} [/D{i}]"
                    for i, part in enumerate(split_category_path(path, mode=mode), start=1))


def hierarchical_category_tag(paths: pd.Series, *, mode: SplitMode = "smart") -> pd.Series:
    """HCT: `a,b,c` -> `[D1] a [/D1] [D2] b [/D2] [D3] c [/D3]` (each distinct path once)."""
    paths = paths.fillna("").astype(str)
    tagged = {path: _hct_one(path, mode) for path in paths.unique()}
    return pd.Series([tagged[p] for p in paths], index=paths.index)


# -------------------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class _Pattern:
    group: str            # name of the pattern's group in the key's combined regex
    prefix: str           # prefix given to the pattern's own named groups
    format: str | None
    case: str


@dataclass(frozen=True)
class _KeyMatcher:
    regex: re.Pattern[str] | None
    forms: dict[str, str]             # lower-cased surface form -> canonical value
    patterns: tuple[_Pattern, ...]

    def find(self, text: str) -> str:
        """Canonical value of the leftmost (then longest) match in lower-cased `text`, or ""."""
        match = self.regex.search(text) if self.regex is not None else None
        if match is None:
            return ""
        if match.lastgroup in ("w", "u"):
            return self.forms[match.group(0)]
        pattern = next(p for p in self.patterns if p.group == match.lastgroup)
        groups = {name.removeprefix(pattern.prefix): value or ""
                  for name, value in match.groupdict().items() if name.startswith(pattern.prefix)}
        if pattern.format is not None:
            value = pattern.format.format(**groups)
        else:
            value = groups.get("value") or match.group(0)
        value = _SPACES.sub("", value)
        return value.upper() if pattern.case == "upper" else value


@dataclass(frozen=True)
class AttributeVocab:
    """A parsed SIT vocabulary: canonical values and surface forms per attribute key."""

    source: str
    digest: str                              # sha256 of the file's bytes (for cache keys)
    values: dict[str, dict[str, tuple[str, ...]]]
    matchers: dict[str, _KeyMatcher]


def _trie_regex(words: Iterable[str]) -> str:
    """A regex alternation of `words` factored as a trie; at each node longer words win."""
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        branches = [re.escape(char) + build(child)
                    for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return build(trie)


def _fail(source: str, where: str, message: str) -> ConfigError:
    return ConfigError(f"SIT vocabulary {source}: {where}: {message}")


def _compile_key(source: str, key: str, spec: Any) -> tuple[dict[str, tuple[str, ...]], _KeyMatcher]:
    if not isinstance(spec, dict):
        raise _fail(source, f"attributes.{key}", "expected a mapping with 'values' and 'patterns'")
    unknown = sorted(set(spec) - {"values", "patterns"})
    if unknown:
        raise _fail(source, f"attributes.{key}.{unknown[0]}", "unknown key")
    values = spec.get("values") or {}
    if not isinstance(values, dict):
        raise _fail(source, f"attributes.{key}.values", "expected a mapping canonical -> forms")
    canon: dict[str, tuple[str, ...]] = {}
    forms: dict[str, str] = {}
    for value, surface in values.items():
        where = f"attributes.{key}.values.{value}"
        if isinstance(surface, str):
            surface = [surface]
        if not isinstance(value, str) or not isinstance(surface, list) or not all(
                isinstance(f, str) and f.strip() for f in surface):
            raise _fail(source, where, "expected a text value with a list of non-empty strings "
                                       "(quote numbers and yes/no)")
        canon[value] = tuple(surface)
        for form in {value.lower(), *(f.strip().lower() for f in surface)}:
            if forms.setdefault(form, value) != value:
                raise _fail(source, where, f"form {form!r} also belongs to {forms[form]!r}")
    raw_patterns = spec.get("patterns") or []
    if not isinstance(raw_patterns, list):
        raise _fail(source, f"attributes.{key}.patterns", "expected a list")
    parts, patterns = [], []
    bounded = [f for f in forms if not _UNSPACED.search(f)]
    unspaced = [f for f in forms if _UNSPACED.search(f)]
    if bounded:
        parts.append(rf"(?<!\w)(?P<w>{_trie_regex(bounded)})(?!\w)")
    if unspaced:
        parts.append(f"(?P<u>{_trie_regex(unspaced)})")
    for i, item in enumerate(raw_patterns):
        where = f"attributes.{key}.patterns[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("regex"), str):
            raise _fail(source, where, "expected a mapping with a 'regex' string")
        unknown = sorted(set(item) - {"regex", "format", "case"})
        if unknown:
            raise _fail(source, f"{where}.{unknown[0]}", "unknown key")
        case = item.get("case", "lower")
        if case not in ("lower", "upper"):
            raise _fail(source, f"{where}.case", f"expected lower or upper (got {case!r})")
        try:
            own = re.compile(item["regex"])
        except re.error as error:
            raise _fail(source, f"{where}.regex", f"invalid regular expression: {error}") from None
        fmt = item.get("format")
        if fmt is not None:
            try:
                str(fmt).format(**{name: "" for name in own.groupindex})
            except (KeyError, IndexError, ValueError) as error:
                raise _fail(source, f"{where}.format", f"names no group of the regex: {error}") from None
        prefix = f"p{i}_"
        renamed = _GROUP_NAME.sub(lambda m, p=prefix: f"(?P{m.group(1)}{p}{m.group(2)}", item["regex"])
        parts.append(f"(?P<p{i}>{renamed})")
        patterns.append(_Pattern(f"p{i}", prefix, None if fmt is None else str(fmt), case))
    regex = re.compile("|".join(parts)) if parts else None
    return canon, _KeyMatcher(regex, forms, tuple(patterns))


def load_attribute_vocab(path: Path | str | None = None) -> AttributeVocab:
    """Read a SIT vocabulary (None: the built-in one). Errors name the file and the key."""
    file = BUILTIN_VOCAB if path is None else Path(path)
    source = str(file)
    try:
        data = file.read_bytes()
    except OSError as error:
        raise ConfigError(f"SIT vocabulary {source}: cannot read: {error.strerror}") from None
    try:
        raw = yaml.safe_load(data.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"SIT vocabulary {source}: invalid YAML: {error}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("attributes"), dict):
        raise _fail(source, "attributes", "missing: expected a mapping of attribute keys")
    unknown = sorted(set(raw) - {"version", "attributes"})
    if unknown:
        raise _fail(source, unknown[0], "unknown key")
    values, matchers = {}, {}
    for key, spec in raw["attributes"].items():
        if key not in ATTRIBUTE_KEYS:
            raise _fail(source, f"attributes.{key}", f"unknown attribute (expected one of "
                                                     f"{', '.join(ATTRIBUTE_KEYS)})")
        values[key], matchers[key] = _compile_key(source, key, spec)
    return AttributeVocab(source, hashlib.sha256(data).hexdigest(), values, matchers)


# ----------------------------------------------------------------------------- SIT


def extract_attributes(titles: pd.Series, *, vocab: AttributeVocab) -> pd.DataFrame:
    """Canonical attribute values per title (columns ATTRIBUTE_KEYS; "" when absent).

    Titles are lower-cased, each distinct title is searched once per key with the key's
    compiled regex; the leftmost match wins, at equal positions the longest form.
    """
    titles = titles.fillna("").astype(str)
    unique = pd.unique(titles)
    lowered = [t.lower() for t in unique]
    codes = pd.Index(unique).get_indexer(titles)
    columns = {}
    for key in ATTRIBUTE_KEYS:
        matcher = vocab.matchers.get(key)
        found = [matcher.find(t) for t in lowered] if matcher else [""] * len(lowered)
        columns[key] = np.asarray(found, dtype=object)[codes]
    return pd.DataFrame(columns, index=titles.index).astype(str)


def normalize_query(queries: pd.Series) -> pd.Series:
    """Lower-cased queries with runs of whitespace collapsed to one space and ends stripped."""
    return queries.fillna("").astype(str).str.lower().str.replace(_SPACES, " ", regex=True).str.strip()


def qc_leaf_lookup(qc_train: pd.DataFrame, *, mode: SplitMode = "smart") -> dict[str, str]:
    """Normalised query -> leaf category (last level of category_path) over label-1 QC rows.

    When a query has several positive leaves the most frequent wins (ties: alphabetical).
    """
    positive = qc_train[pd.to_numeric(qc_train["label"], errors="coerce").eq(1).fillna(False)]
    if positive.empty:
        return {}
    paths = positive["category_path"].fillna("").astype(str)
    leaves = {p: (split_category_path(p, mode=mode) or [""])[-1] for p in paths.unique()}
    pairs = pd.DataFrame({"query": normalize_query(positive["origin_query"]).to_numpy(),
                          "leaf": [leaves[p] for p in paths]})
    pairs = pairs[(pairs["query"] != "") & (pairs["leaf"] != "")]
    counts = pairs.value_counts().rename("n").reset_index()
    counts = counts.sort_values(["query", "n", "leaf"], ascending=[True, False, True])
    best = counts.drop_duplicates("query")
    return dict(zip(best["query"], best["leaf"], strict=True))


def format_attribute_tag(values: dict[str, str]) -> str:
    """`[ATTR] key: value, ...` over the non-empty values in ATTRIBUTE_KEYS + category order."""
    found = [f"{key}: {values[key]}" for key in (*ATTRIBUTE_KEYS, "category") if values.get(key)]
    return "[ATTR] " + ", ".join(found) if found else ""


def attribute_tags(rows: pd.DataFrame, *, vocab: AttributeVocab,
                   qc_leaf: dict[str, str] | None = None,
                   attributes: pd.DataFrame | None = None) -> pd.Series:
    """SIT: the `[ATTR] brand: x, color: y, ..., category: leaf` string per QI row.

    `category` is the QC leaf of the row's normalised query when `qc_leaf` has it; the string
    is "" when nothing at all is found. Pass `attributes` to reuse an earlier extraction.
    """
    if attributes is None:
        attributes = extract_attributes(rows["item_title"], vocab=vocab)
    table = attributes.reindex(columns=list(ATTRIBUTE_KEYS), fill_value="").fillna("").copy()
    if qc_leaf:
        table["category"] = normalize_query(rows["origin_query"]).map(qc_leaf).fillna("").to_numpy()
    records = table.to_dict("records")
    return pd.Series([format_attribute_tag(r) for r in records], index=rows.index)


__all__ = [
    "ATTRIBUTE_KEYS", "BUILTIN_VOCAB", "AttributeVocab", "attribute_tags", "extract_attributes",
    "format_attribute_tag", "hierarchical_category_tag", "language_tag", "load_attribute_vocab",
    "normalize_query", "qc_leaf_lookup", "split_category_path",
]

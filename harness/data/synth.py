"""The built-in benchmark: synthetic data in exactly the competition's format.

The format is described in docs/architecture.md, "Data format".

`generate` writes `train_/dev_/test_` files for QC and QI (JSON Lines in `.txt` files, ids 1..N,
labels "1"/"0" on every split), the label-noise ground truth of the train files (`truth_QC.txt`,
`truth_QI.txt`) and `synth.json`. Words come from a small multilingual lexicon in
`harness/data/lexicon/*.yaml`; relevance follows fixed rules, so a small model can learn it:

* QC: a query names a product type -- by the leaf's English name ("exact"), an English synonym
  ("synonym") or a word of the query's language ("translation") -- and is relevant to a category
  path iff the path's leaf is that product type. A query made of a brand only ("brand") is
  relevant to every leaf of the group that sells the brand. Other query words never matter.
* QI: relevant iff the title's product type is the query's and every attribute the query names
  (brand, colour, material, size) is in the title with the same value.

Negatives are hard ("sibling": a leaf with the same parent; QI "attribute": the same product with
another value of an attribute the query names) or easier ("cousin": same top level; "random":
another top level; "symbols": a query of symbols only). Queries are noisy: code-mixed English
words, fillers, typos, symbols, Title/UPPER case, no spaces (ja, th). Products are Zipf-popular
(which ones is drawn from the seed), as in real search logs.

Train labels are flipped at the requested rate per language (exact counts), with the clean
positive share chosen so that the written labels have the real positive rates; dev and test are
clean and labelled with the real rates. QI train has null titles at the real rate (453 of
340,000) at every scale but tiny, which has none. Each file has its own random stream, so the
dev and test files do not depend on the noise setting.

What each component can find here (the planted structure; bench/calibration.py measures which
of them the tiny model detects):

* TR -- a known positive effect: dev/test have languages that train lacks (QC: ar, de, it, pl;
  QI also id, vn), and every word of them is in the lexicon that TR's offline translator uses,
  so translating the query to English turns unseen-language rows into seen ones.
* PLACEBO -- no effect by construction (the same words after every query).
* QR -- train labels flipped at the `noise` rate per language, listed in truth_QC/QI.txt, which
  the QR audit scores against (precision, recall, correct rows removed); whether removing them
  raises F1 depends on the rate (`noise: {en: 0.3}` plants more).
* HCT -- level names that contain ", " (the real data's rule), which only a split that keeps
  them whole reads as one level.
* SIT / DG -- QI "attribute" negatives differ from a positive in one attribute value only
  (brand, colour, material, size), which SIT's tags and DG's descriptions spell out.
* LT -- languages differ in word order, fillers and spacing (ja, th without spaces).
"""

from __future__ import annotations

import json
from bisect import bisect_right
from dataclasses import dataclass
from functools import cache
from importlib import resources
from itertools import accumulate
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm import tqdm

from harness.data import (
    EVAL_LANGUAGES,
    LANGUAGES,
    SPLITS,
    TASKS,
    TRAIN_LANGUAGES,
    split_file_name,
    target_column,
)
from harness.errors import ConfigError

# Rows per language (train; dev and test each), and the real files' total rows for "full".
SCALES = {"tiny": (60, 30), "small": (400, 100), "medium": (4_000, 1_000)}
FULL_ROWS = {("train", "QC"): 300_000, ("train", "QI"): 340_000,
             ("eval", "QC"): 100_000, ("eval", "QI"): 65_000}
NULL_TITLE_RATE = 453 / 340_000
SYMBOLS_ONLY_RATE = 0.01  # of negatives
BRAND_ONLY_RATE = 0.08  # of QC queries
SYNONYM_RATE = 0.35  # of English queries whose product has synonyms
FIRST_WORD_RATE = 0.8  # a lexicon entry's first (most common) word; else one of the others
# Products are not equally popular: weight 1 / (rank + offset) ** exponent, ranks drawn per seed.
# Steep enough that the frequent products recur often at scale small, so a tiny model can learn them.
POPULARITY = {"offset": 1.0, "exponent": 2.0}
QC_NEGATIVES = {"sibling": 0.4, "cousin": 0.2, "random": 0.4}
QI_NEGATIVES = {"attribute": 0.4, "sibling": 0.3, "random": 0.3}
# Chance that a query names an attribute (QC: noise words; QI: constraints on the title).
QC_QUERY_ATTRIBUTES = {"brand": 0.2, "colour": 0.15, "size": 0.08}
QI_QUERY_ATTRIBUTES = {"brand": 0.2, "colour": 0.45, "material": 0.3, "size": 0.25}
# Chance that a title shows an attribute the query does not constrain, and decoration words.
TITLE_ATTRIBUTES = {"brand": 0.85, "colour": 0.6, "material": 0.5, "size": 0.5}
TITLE_DECORATION = {"audience": 0.4, "style": 0.35, "extra": 0.3}
QUERY_NOISE = {"filler": 0.15, "typo": 0.06, "symbol": 0.05, "title_case": 0.08, "upper": 0.02,
               "brand_first": 0.7}
ATTRIBUTES = ("brand", "colour", "material", "size")


@dataclass(frozen=True)
class Leaf:
    """One product type: a leaf of the category tree."""

    name: str
    path: str
    group: int
    title: str
    synonyms: tuple[str, ...]
    words: dict[str, tuple[str, ...]]  # language -> native words
    options: dict[str, tuple[str, ...]]  # attribute -> values it can take (empty: none)
    size_word: bool
    audience: bool


@dataclass(frozen=True)
class Lexicon:
    leaves: tuple[Leaf, ...]
    group_leaves: tuple[tuple[int, ...], ...]
    negatives: dict[str, tuple[tuple[int, ...], ...]]  # kind -> per leaf, the candidate leaves
    words: dict[str, dict[str, dict[str, tuple[str, ...]]]]  # colour/material -> key -> lang
    languages: dict[str, dict[str, Any]]
    title: dict[str, list[str]]
    symbols: dict[str, list[str]]


@cache
def load_lexicon() -> Lexicon:
    """Read and check the YAML lexicon shipped with the package."""
    folder = resources.files("harness.data") / "lexicon"
    read = {name: yaml.safe_load((folder / f"{name}.yaml").read_text("utf-8"))
            for name in ("taxonomy", "products", "attributes", "languages")}
    products, attributes, groups = read["products"], read["attributes"], read["taxonomy"]["groups"]
    words = {kind: {key: _word_table(table, f"{kind} {key}", LANGUAGES)
                    for key, table in attributes[f"{kind}s"].items()}
             for kind in ("colour", "material")}
    brands = [brand for spec in groups for brand in spec["brands"]]
    _require(len(set(brands)) == len(brands), "a brand belongs to one group only")
    _require(set(read["languages"]["languages"]) == set(LANGUAGES), "languages.yaml: 13 languages")
    leaves: list[Leaf] = []
    group_leaves, tops = [], []
    for group, spec in enumerate(groups):
        _require(len(spec["leaves"]) >= 2 and len(spec["brands"]) >= 2,
                 f"group {spec['parent']} needs two leaves and two brands")
        group_leaves.append(tuple(range(len(leaves), len(leaves) + len(spec["leaves"]))))
        for name in spec["leaves"]:
            product, levels = products[name], [*spec["parent"], name]
            # Inside a level name a comma is always followed by a space (the real data's rule).
            _require(all(part.startswith(" ") for level in levels for part in level.split(",")[1:]),
                     f"level names of {levels}: a comma inside a name needs a space after it")
            _require(all(m in words["material"] for m in product.get("materials", ())),
                     f"unknown material of {name}")
            sizes = attributes["sizes"][product["sizes"]] if "sizes" in product else {}
            tops.append(levels[0])
            leaves.append(Leaf(
                name=name, path=",".join(levels), group=group, title=product["title"],
                synonyms=tuple(product.get("synonyms", ())),
                words=_word_table(product["words"], name, LANGUAGES[1:]),
                options={"brand": tuple(spec["brands"]),
                         "colour": tuple(words["colour"]) if product.get("colour") else (),
                         "material": tuple(product.get("materials", ())),
                         "size": tuple(str(v) for v in sizes.get("values", ()))},
                size_word=bool(sizes.get("word")), audience=bool(spec.get("audience"))))
    _require(len({leaf.name for leaf in leaves}) == len(leaves) == len(products),
             "every product must be exactly one leaf")
    indices = range(len(leaves))
    negatives = {
        "sibling": tuple(tuple(j for j in group_leaves[a.group] if j != i)
                         for i, a in enumerate(leaves)),
        "cousin": tuple(tuple(j for j in indices if tops[j] == tops[i] and leaves[j].group != group)
                        for i, group in enumerate(leaf.group for leaf in leaves)),
        "random": tuple(tuple(j for j in indices if tops[j] != tops[i]) for i in indices),
    }
    _require(all(negatives["cousin"]), "every top level needs two groups")
    languages = read["languages"]
    return Lexicon(tuple(leaves), tuple(group_leaves), negatives, words,
                   languages["languages"], attributes["title"], languages["symbols"])


def _word_table(table: dict, what: str, languages: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    _require(all(table.get(lang) for lang in languages), f"{what} lacks a language")
    return {lang: tuple(str(word) for word in table[lang]) for lang in languages}


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(f"harness/data/lexicon: {message}")


class _Dice:
    """Uniform draws from a numpy Generator, fetched in blocks: fast, and fixed by the seed."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._block: list[float] = []
        self._next = 0

    def u(self) -> float:
        if self._next == len(self._block):
            self._block, self._next = self._rng.random(1 << 16).tolist(), 0
        self._next += 1
        return self._block[self._next - 1]

    def chance(self, p: float) -> bool:
        return self.u() < p

    def pick(self, items: Any) -> Any:
        return items[int(self.u() * len(items))]

    def common(self, words: tuple[str, ...]) -> str:
        """The first word mostly, else one of the others."""
        if len(words) == 1 or self.u() < FIRST_WORD_RATE:
            return words[0]
        return self.pick(words[1:])

    def choose(self, items: Any, cumulative: list[float]) -> Any:
        """An item drawn with the weights whose running sums are `cumulative`."""
        return items[bisect_right(cumulative, self.u() * cumulative[-1])]

    def weighted(self, weights: dict[str, float]) -> str:
        threshold = self.u() * sum(weights.values())
        for key, weight in weights.items():
            threshold -= weight
            if threshold < 0:
                return key
        return key


class _Pairs:
    """Makes one (query, target, kind) triple at a time following the relevance rules."""

    def __init__(self, lexicon: Lexicon, dice: _Dice, popularity: list[float]) -> None:
        self.lex, self.d = lexicon, dice
        self.indices = range(len(lexicon.leaves))
        self.cumulative = list(accumulate(popularity))
        self.negatives = {kind: [(c, list(accumulate(popularity[j] for j in c))) for c in per_leaf]
                          for kind, per_leaf in lexicon.negatives.items()}

    def qc(self, lang: str, positive: bool) -> tuple[str, str, str]:
        d, lex = self.d, self.lex
        index = d.choose(self.indices, self.cumulative)
        leaf = lex.leaves[index]
        if not positive and d.chance(SYMBOLS_ONLY_RATE):
            return d.pick(lex.symbols["only"]), leaf.path, "symbols"
        if d.chance(BRAND_ONLY_RATE):
            query = self._query(lang, leaf, "", {"brand": d.pick(leaf.options["brand"])})
            if positive:
                return query, lex.leaves[d.pick(lex.group_leaves[leaf.group])].path, "brand"
            kind = d.weighted({k: QC_NEGATIVES[k] for k in ("cousin", "random")})
            return query, self._other(index, kind).path, kind
        product, form = self._product(leaf, lang, leaf.name)
        query = self._query(lang, leaf, product, self._ask(leaf, QC_QUERY_ATTRIBUTES))
        if positive:
            return query, leaf.path, form
        kind = d.weighted(QC_NEGATIVES)
        return query, self._other(index, kind).path, kind

    def qi(self, lang: str, positive: bool) -> tuple[str, str, str]:
        d, lex = self.d, self.lex
        index = d.choose(self.indices, self.cumulative)
        leaf = lex.leaves[index]
        kind = "" if positive else d.weighted(QI_NEGATIVES)
        if kind and d.chance(SYMBOLS_ONLY_RATE):
            return d.pick(lex.symbols["only"]), self._title(leaf, {}), "symbols"
        asked = self._ask(leaf, QI_QUERY_ATTRIBUTES)
        changeable = [k for k in ATTRIBUTES if len(leaf.options[k]) > 1]
        if kind == "attribute" and not set(asked) & set(changeable):
            key = d.pick(changeable)  # always holds "brand": every group sells two brands
            asked[key] = d.pick(leaf.options[key])
        product, form = self._product(leaf, lang, leaf.title.lower())
        query = self._query(lang, leaf, product, asked)
        if positive:
            return query, self._title(leaf, asked), form
        if kind == "attribute":
            key = d.pick([k for k in asked if k in changeable])
            other_values = [v for v in leaf.options[key] if v != asked[key]]
            return query, self._title(leaf, {**asked, key: d.pick(other_values)}), kind
        other = self._other(index, kind)
        shown = {k: v for k, v in asked.items() if v in other.options[k]}
        return query, self._title(other, shown), kind

    def _other(self, index: int, kind: str) -> Leaf:
        return self.lex.leaves[self.d.choose(*self.negatives[kind][index])]

    def _ask(self, leaf: Leaf, rates: dict[str, float]) -> dict[str, str]:
        return {k: self.d.pick(leaf.options[k]) for k, p in rates.items()
                if leaf.options[k] and self.d.chance(p)}

    def _product(self, leaf: Leaf, lang: str, english: str) -> tuple[str, str]:
        """The product word of a query and its form: exact, synonym or translation."""
        if lang == "en":
            if leaf.synonyms and self.d.chance(SYNONYM_RATE):
                return self.d.pick(leaf.synonyms), "synonym"
            return english, "exact"
        if self.d.chance(self.lex.languages[lang]["code_mix"]):
            return english, "exact"
        return self.d.common(leaf.words[lang]), "translation"

    def _word(self, kind: str, key: str, lang: str) -> str:
        if self.d.chance(self.lex.languages[lang]["code_mix"]):
            lang = "en"
        return self.d.common(self.lex.words[kind][key][lang])

    def _query(self, lang: str, leaf: Leaf, product: str, asked: dict[str, str]) -> str:
        d, spec = self.d, self.lex.languages[lang]
        colour = self._word("colour", asked["colour"], lang) if "colour" in asked else ""
        material = self._word("material", asked["material"], lang) if "material" in asked else ""
        if spec["order"] == "noun_first":
            if material and spec["material_link"]:
                material = f"{spec['material_link']} {material}"
            words = [product, colour, material]
        else:
            words = [colour, material, product]
        if "size" in asked:
            size = asked["size"]
            words.append(f"{spec['size_word']} {size}" if leaf.size_word else size)
        if "brand" in asked:
            brand = asked["brand"].lower()
            words = [brand, *words] if d.chance(QUERY_NOISE["brand_first"]) else [*words, brand]
        if d.chance(QUERY_NOISE["filler"]):
            filler = d.pick(spec["fillers"])
            words = [filler, *words] if d.chance(0.5) else [*words, filler]
        words = [w for w in words if w]
        query = _glue(words) if d.chance(spec["nospace"]) else " ".join(words)
        if d.chance(QUERY_NOISE["typo"]):
            query = self._typo(query)
        if spec["latin"] and d.chance(QUERY_NOISE["title_case"]):
            query = query.title()
        elif spec["latin"] and d.chance(QUERY_NOISE["upper"]):
            query = query.upper()
        if d.chance(QUERY_NOISE["symbol"]):
            mark = d.pick(self.lex.symbols["decorations"])
            query = f"{query}{mark}" if d.chance(0.6) else f"{mark} {query}"
        return query

    def _typo(self, text: str) -> str:
        """Drop, double or swap one letter (any script); short queries are left alone."""
        at, how = int(self.d.u() * len(text)), self.d.u()
        if len(text) < 4 or not text[at].isalpha():
            return text
        if how < 1 / 3:
            return text[:at] + text[at + 1:]
        if how < 2 / 3:
            return text[:at] + text[at] + text[at:]
        return text[:at] + text[at + 1:at + 2] + text[at] + text[at + 2:]

    def _title(self, leaf: Leaf, shown: dict[str, str]) -> str:
        """An English item title showing `shown` plus random other attributes and decoration."""
        d, words, vocab = self.d, [], self.lex.title
        values = dict(shown)
        for key, p in TITLE_ATTRIBUTES.items():
            if key not in values and leaf.options[key] and d.chance(p):
                values[key] = d.pick(leaf.options[key])
        if "brand" in values:
            words.append(values["brand"])
        if leaf.audience and d.chance(TITLE_DECORATION["audience"]):
            words.append(d.pick(vocab["audiences"]))
        if d.chance(TITLE_DECORATION["style"]):
            words.append(d.pick(vocab["styles"]))
        for kind in ("colour", "material"):
            if kind in values:
                words.append(d.pick(self.lex.words[kind][values[kind]]["en"]).title())
        words.append(leaf.title)
        if "size" in values:
            words.append(f"Size {values['size'].upper()}" if leaf.size_word else values["size"])
        title = " ".join(words)
        if d.chance(TITLE_DECORATION["extra"]):
            title += d.pick(vocab["separators"]) + d.pick(vocab["extras"])
        return title


def _glue(words: list[str]) -> str:
    """Words written without spaces, except between two Latin-script words."""
    text = words[0]
    for word in words[1:]:
        latin = text[-1].isascii() and word[0].isascii()
        text += f" {word}" if latin else word
    return text


@dataclass(frozen=True)
class _Split:
    language: list[str]
    query: list[str]
    target: list[str | None]
    kind: list[str]
    clean: np.ndarray
    noisy: np.ndarray

    @property
    def label(self) -> np.ndarray:
        return np.where(self.noisy, 1 - self.clean, self.clean)


def _make_split(lexicon: Lexicon, rng: np.random.Generator, *, task: str,
                per_language: dict[str, int], popularity: list[float],
                noise: dict[str, float] | None, null_rate: float) -> _Split:
    """Rows of one file: exact positive and noisy counts per language, languages interleaved."""
    languages = np.repeat(list(per_language), list(per_language.values()))
    clean = np.zeros(len(languages), dtype=np.int8)
    start = 0
    for lang, count in per_language.items():
        rate = _clean_positive_rate(lexicon.languages[lang][f"{task.lower()}_positive"],
                                    noise[lang] if noise else 0.0)
        clean[start + rng.choice(count, size=round(rate * count), replace=False)] = 1
        start += count
    order = rng.permutation(len(languages))
    languages, clean = languages[order], clean[order]
    pairs = _Pairs(lexicon, _Dice(rng), popularity)
    make = pairs.qc if task == "QC" else pairs.qi
    triples = [make(lang, positive) for lang, positive
               in zip(languages.tolist(), clean.astype(bool).tolist(), strict=True)]
    noisy = np.zeros(len(languages), dtype=bool)
    for lang in per_language if noise else ():
        rows = np.flatnonzero(languages == lang)
        noisy[rng.choice(rows, size=round(noise[lang] * len(rows)), replace=False)] = True
    targets: list[str | None] = [t for _, t, _ in triples]
    for row in rng.choice(len(targets), size=round(null_rate * len(targets)), replace=False):
        targets[row] = None
    return _Split(languages.tolist(), [q for q, _, _ in triples], targets,
                  [k for _, _, k in triples], clean, noisy)


def _popularity(count: int, seed: int) -> list[float]:
    """Weights of the products (Zipf-like over ranks drawn from the seed), shared by all files."""
    ranks = np.random.default_rng([seed % 2**63, 2**32]).permutation(count)  # a stream of its own
    return (1.0 / (ranks + POPULARITY["offset"]) ** POPULARITY["exponent"]).tolist()


def _clean_positive_rate(written: float, noise: float) -> float:
    """The clean positive share whose labels, after flipping `noise` of them, have `written`."""
    if noise >= 0.5:
        return written
    return min(1.0, max(0.0, (written - noise) / (1 - 2 * noise)))


def _rows_per_language(scale: str, split: str, task: str) -> dict[str, int]:
    languages = (TRAIN_LANGUAGES if split == "train" else EVAL_LANGUAGES)[task]
    part = "train" if split == "train" else "eval"
    if scale == "full":
        base, extra = divmod(FULL_ROWS[(part, task)], len(languages))
        return {lang: base + (i < extra) for i, lang in enumerate(languages)}
    return dict.fromkeys(languages, SCALES[scale][0 if part == "train" else 1])


def split_rows(scale: str, split: str, task: str) -> int:
    """Rows the generator writes for one split ("train", "dev", "test") of a task."""
    return sum(_rows_per_language(scale, split, task).values())


def _noise_rates(noise: float | dict[str, float]) -> dict[str, float]:
    """One train label-noise rate per language; languages missing from a dict get none."""
    if isinstance(noise, dict):
        unknown = sorted(set(noise) - set(LANGUAGES))
        if unknown:
            raise ConfigError(f"noise: unknown language(s) {', '.join(map(str, unknown))}; "
                              f"expected some of {', '.join(LANGUAGES)}")
        rates = {lang: float(noise.get(lang, 0.0)) for lang in LANGUAGES}
    else:
        rates = dict.fromkeys(LANGUAGES, float(noise))
    for lang, rate in rates.items():
        if not 0.0 <= rate <= 1.0:
            raise ConfigError(f"noise: the rate for '{lang}' must be between 0 and 1, got {rate}")
    return rates


def _write_jsonl(path: Path, records: Any) -> None:
    with open(path, "w", encoding="utf-8", newline="\n", buffering=1 << 20) as handle:
        handle.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def _write_split(path: Path, task: str, rows: _Split) -> None:
    column = target_column(task)
    fields = zip(rows.language, rows.query, rows.target, rows.label.tolist(), strict=True)
    _write_jsonl(path, ({"id": i, "task": task, "language": lang, "origin_query": query,
                         column: target, "label": str(label)}
                        for i, (lang, query, target, label) in enumerate(fields, 1)))


def _write_truth(path: Path, rows: _Split) -> None:
    fields = zip(rows.language, rows.label.tolist(), rows.clean.tolist(), rows.noisy.tolist(),
                 rows.kind, strict=True)
    _write_jsonl(path, ({"id": i, "language": lang, "label": label, "clean_label": clean,
                         "noisy": noisy, "kind": kind}
                        for i, (lang, label, clean, noisy, kind) in enumerate(fields, 1)))


@dataclass(frozen=True)
class SynthSummary:
    """What `generate` wrote. Keys of `counts` and `positive_rate` are (split, task)."""

    out_dir: Path
    seed: int
    scale: str
    files: tuple[Path, ...]
    counts: dict[tuple[str, str], int]
    positive_rate: dict[tuple[str, str], float]
    noisy: dict[str, int]  # task -> flipped train labels
    null_titles: int

    def describe(self) -> str:
        """One paragraph for the command line."""
        parts = []
        for task in TASKS:
            sizes = " / ".join(f"{split} {self.counts[(split, task)]:,}" for split in SPLITS)
            parts.append(f"{task} {sizes} rows ({len(TRAIN_LANGUAGES[task])} train and "
                         f"{len(EVAL_LANGUAGES[task])} dev/test languages, "
                         f"{self.positive_rate[('train', task)]:.1%} of train positive, "
                         f"{self.noisy[task]:,} train labels flipped)")
        return (f"Wrote the synthetic benchmark (seed {self.seed}, scale {self.scale}) to "
                f"{self.out_dir}: {'; '.join(parts)}. Dev and test are labelled and clean; "
                f"the flipped labels are listed in truth_QC.txt and truth_QI.txt"
                f"{f'; {self.null_titles} QI train titles are null' if self.null_titles else ''}.")


def generate(out_dir: Path, *, seed: int = 0, scale: str = "small",
             noise: float | dict[str, float] = 0.08, progress: bool = False) -> SynthSummary:
    """Write the six competition files, truth_QC/QI.txt and synth.json into `out_dir`.

    The same seed, scale and noise give the same bytes. `noise` is the share of train labels
    flipped, one rate for all languages or a dict language -> rate (missing languages: none).
    """
    if scale not in (*SCALES, "full"):
        raise ConfigError(f"scale: expected one of tiny, small, medium, full, got '{scale}'")
    rates = _noise_rates(noise)
    lexicon = load_lexicon()
    popularity = _popularity(len(lexicon.leaves), seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = [(task, split, _rows_per_language(scale, split, task))
            for task in TASKS for split in SPLITS]
    files, counts, positive_rate, noisy, null_titles = [], {}, {}, {}, 0
    with tqdm(total=sum(sum(p.values()) for *_, p in plan), unit="row", disable=not progress,
              desc="synth") as bar:
        for task, split, per_language in plan:
            train = split == "train"
            null_rate = NULL_TITLE_RATE if train and task == "QI" and scale != "tiny" else 0.0
            rng = np.random.default_rng([seed % 2**63, TASKS.index(task), SPLITS.index(split)])
            rows = _make_split(lexicon, rng, task=task, per_language=per_language,
                               popularity=popularity, noise=rates if train else None,
                               null_rate=null_rate)
            files.append(out_dir / split_file_name(split, task))
            _write_split(files[-1], task, rows)
            counts[(split, task)] = len(rows.language)
            positive_rate[(split, task)] = float(rows.label.mean())
            if train:
                files.append(out_dir / f"truth_{task}.txt")
                _write_truth(files[-1], rows)
                noisy[task] = int(rows.noisy.sum())
                null_titles += sum(target is None for target in rows.target)
            bar.update(len(rows.language))
    meta = {"generator": "harness.data.synth", "seed": int(seed), "scale": scale,
            "noise": ({k: float(v) for k, v in noise.items()} if isinstance(noise, dict)
                      else float(noise)),
            "noise_per_language": rates,
            "counts": {f"{s}_{t}": n for (s, t), n in counts.items()},
            "positive_rate": {f"{s}_{t}": round(r, 4) for (s, t), r in positive_rate.items()},
            "noisy": noisy, "null_item_titles": null_titles}
    files.append(out_dir / "synth.json")
    files[-1].write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return SynthSummary(out_dir, seed, scale, tuple(files), counts, positive_rate, noisy,
                        null_titles)

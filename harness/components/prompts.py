"""Prompt construction: the alpaca-style template, In-Context Learning (ICL) examples and
Chain-of-Thought (CoT) cues.

A prompt is

    {preamble}

    ### Instruction:
    {task instruction}
    [{CoT steps}]                       (CoT on)
    Answer with exactly one word: yes or no.

    [### Options:                       (ICL on: the labelled examples)
    Query: ...
    Category: ...                       (QI: Product: ...)
    Answer: yes

    ...
    ]
    ### Input:
    Query: ...
    Category: ...

    ### Response:

and ends with "### Response:\\n"; the learner appends the answer word. Every text lives in a
versioned file under `texts/` (`prompt_texts` lists the ones a prompt uses, for logging).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
from sklearn.cluster import MiniBatchKMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer
from sklearn.preprocessing import normalize

from harness.data import TASKS
from harness.errors import ConfigError, HarnessError

TEMPLATE_VERSION = "alpaca-v1"
TEXTS_DIR = Path(__file__).parent / "texts"
ANSWERS = {0: "no", 1: "yes"}
TARGET_LABEL = {"QC": "Category", "QI": "Product"}
_NEWLINES = re.compile(r"[\r\n]+")
_CHUNK = 512          # rows per block of the similarity matrix
_MARGIN = 8           # extra nearest candidates kept per row to survive exclusions
# Above this many pool rows of one class, "similar" retrieval is approximate (an inverted-file
# index over reduced TF-IDF vectors, then the exact cosine among the candidates): exact search
# compares every row with every pool row, hours at the competition's 300,000 rows.
EXACT_SEARCH_MAX_POOL = 20_000
_SVD_DIMS = 128       # reduced dimensions of the approximate index
_PROBES = 8           # cells searched per row
_RERANK = 64          # approximate candidates per row re-ranked by the exact cosine


@dataclass(frozen=True)
class Example:
    """One labelled ICL example, rendered like the input with its answer."""

    query: str
    target: str
    label: int


# ---------------------------------------------------------------------------- texts


@cache
def load_text(name: str) -> str:
    """The text file `texts/<name>.txt` (".txt" optional), without its final newline."""
    file = TEXTS_DIR / (name if name.endswith(".txt") else f"{name}.txt")
    if not file.is_file():
        raise HarnessError(f"prompt text {file} does not exist")
    return file.read_text(encoding="utf-8").rstrip("\n")


def _text_names(task: str, cot_version: str | None) -> list[str]:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}")
    names = ["preamble.txt", f"instruction_{task}.txt"]
    if cot_version is not None:
        cot = f"cot_{task}_{cot_version}.txt"
        if not (TEXTS_DIR / cot).is_file():
            available = sorted(p.stem.removeprefix(f"cot_{task}_")
                               for p in TEXTS_DIR.glob(f"cot_{task}_*.txt"))
            raise ConfigError(f"components.CoT.version: no CoT text {cot_version!r} for {task} "
                              f"({TEXTS_DIR / cot}); available: {', '.join(available) or 'none'}")
        names.append(cot)
    names.append("answer_format.txt")
    return names


def prompt_texts(task: str, *, cot_version: str | None) -> dict[str, str]:
    """File name -> text of every text file a prompt for `task` uses (for MLflow logging)."""
    return {name: load_text(name) for name in _text_names(task, cot_version)}


def stable_texts_digest(task: str, *, cot_version: str | None) -> str:
    """A hash of every text a prompt for `task` uses (an edited text file changes it)."""
    from harness.cache import stable_hash

    return stable_hash(prompt_texts(task, cot_version=cot_version))[:16]


def tokenizer_texts() -> list[str]:
    """The template's own texts and format words, for the built-in tokenizer's corpus."""
    texts = [text for task in TASKS for text in prompt_texts(task, cot_version=None).values()]
    # Continues the components' marker lines, hence the leading space.
    return [*texts, " Query: Category: Product: ### Response: yes no"]


def instruction(task: str, *, cot_version: str | None) -> str:
    """The instruction block: task description, optional CoT steps, answer format."""
    names = _text_names(task, cot_version)
    return "\n".join(load_text(name) for name in names[1:])


# ------------------------------------------------------------------------- prompts


def _one_line(text: object) -> str:
    return _NEWLINES.sub(" ", "" if text is None or text is pd.NA else str(text))


def _pair(task: str, query: object, target: object) -> str:
    return f"Query: {_one_line(query)}\n{TARGET_LABEL[task]}: {_one_line(target)}"


def build_prompts(rows: pd.DataFrame, *, task: str, cot_version: str | None = None,
                  examples: Sequence[Sequence[Example]] | None = None) -> list[str]:
    """Prompts for `rows` (columns query_text, target_text), ending with "### Response:\\n".

    `examples[i]` are the ICL examples of row i (None or empty: no options block).
    """
    if examples is not None and len(examples) != len(rows):
        raise ValueError(f"{len(examples)} example lists for {len(rows)} rows")
    head = (f"{load_text('preamble')}\n\n### Instruction:\n"
            f"{instruction(task, cot_version=cot_version)}\n\n")
    rendered: dict[tuple[Example, ...], str] = {}
    prompts = []
    for i, (query, target) in enumerate(zip(rows["query_text"], rows["target_text"], strict=True)):
        block = ""
        if examples is not None and len(examples[i]):
            key = tuple(examples[i])
            if key not in rendered:
                rendered[key] = "### Options:\n" + "\n\n".join(
                    f"{_pair(task, ex.query, ex.target)}\nAnswer: {ANSWERS[int(ex.label)]}"
                    for ex in key) + "\n\n"
            block = rendered[key]
        prompts.append(f"{head}{block}### Input:\n{_pair(task, query, target)}\n\n### Response:\n")
    return prompts


# ------------------------------------------------------------------------------ ICL


def _labels(pool: pd.DataFrame) -> np.ndarray:
    return pd.to_numeric(pool["label"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _pair_keys(frame: pd.DataFrame) -> np.ndarray:
    query = frame["query_text"].fillna("").astype(str)
    target = frame["target_text"].fillna("").astype(str)
    return (query + "\x1f" + target).to_numpy(dtype=object)


def _similarity_text(frame: pd.DataFrame) -> list[str]:
    return (frame["query_text"].fillna("").astype(str) + " "
            + frame["target_text"].fillna("").astype(str)).tolist()


def _diverse_rankings(pool: pd.DataFrame, labels: np.ndarray, need: dict[int, int],
                      seed: int) -> dict[int, list[int]]:
    """Per class, pool positions in preference order: first the fixed picks (different
    languages where possible, alternating yes/no), then the rest in a seeded random order."""
    order = np.random.default_rng(seed).permutation(len(pool))
    languages = pool["language"].fillna("").astype(str).to_numpy()
    ordered = {c: [int(j) for j in order if labels[j] == c] for c in need}
    chosen: dict[int, list[int]] = {c: [] for c in need}
    used: set[str] = set()
    for c in _interleave(need):
        taken = set(chosen[c])
        free = [j for j in ordered[c] if j not in taken]
        pick = next((j for j in free if languages[j] not in used), free[0])
        chosen[c].append(pick)
        used.add(languages[pick])
    rankings = {}
    for c in need:
        taken = set(chosen[c])
        rankings[c] = chosen[c] + [j for j in ordered[c] if j not in taken]
    return rankings


def _interleave(need: dict[int, int]) -> list[int]:
    """Class sequence yes, no, yes, no, ... holding need[1] yeses and need[0] noes."""
    out = []
    for i in range(max(need.values())):
        out += [c for c in (1, 0) if i < need[c]]
    return out


def _first_allowed(candidates: Iterable[int], n: int, row_pair: str, row_id: str, pool_pairs: np.ndarray,
                   pool_ids: np.ndarray | None) -> list[int]:
    picked = []
    for j in candidates:
        if pool_pairs[j] == row_pair or (pool_ids is not None and pool_ids[j] == row_id):
            continue
        picked.append(int(j))
        if len(picked) == n:
            break
    return picked


def _nearest(rows_matrix, class_matrix, class_positions: np.ndarray, n: int,
             row_pairs: np.ndarray, row_ids: np.ndarray, pool_pairs: np.ndarray,
             pool_ids: np.ndarray | None) -> list[list[int]]:
    """For each row, the n most similar pool rows of one class (ties: lower position)."""
    out: list[list[int]] = []
    m = min(class_matrix.shape[0], n + _MARGIN)
    for start in range(0, rows_matrix.shape[0], _CHUNK):
        sims = (rows_matrix[start:start + _CHUNK] @ class_matrix.T).toarray()
        top = np.argpartition(-sims, m - 1, axis=1)[:, :m] if m < sims.shape[1] else \
            np.tile(np.arange(sims.shape[1]), (sims.shape[0], 1))
        top.sort(axis=1)
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        for r in range(sims.shape[0]):
            i = start + r
            args = (row_pairs[i], row_ids[i], pool_pairs, pool_ids)
            picked = _first_allowed(class_positions[top[r]], n, *args)
            if len(picked) < n:       # many exclusions: rank the whole class for this row
                full = np.argsort(-sims[r], kind="stable")
                picked = _first_allowed(class_positions[full], n, *args)
            out.append(picked)
    return out


class SimilarityIndex:
    """The pool side of "similar" retrieval, fitted once per pool: TF-IDF of char_wb 2-4-grams
    (what `TfidfVectorizer` gives with fit on the pool, but each distinct text analysed once: the
    competition's QC train set holds 58,000 distinct pairs in 300,000 rows), and for large pools
    the reduced vectors and cells of the approximate search. A trial asks for the examples of its
    train, evaluation, dev and test rows from one pool; `for_pool` reuses the last index."""

    def __init__(self, pool_texts: list[str]) -> None:
        self.texts = pool_texts
        self.codes, unique = pd.factorize(pd.Series(pool_texts, dtype=object))
        self.counter = CountVectorizer(analyzer="char_wb", ngram_range=(2, 4), dtype=np.float32)
        counts = self.counter.fit_transform(unique).tocsr()
        self.weighting = TfidfTransformer().fit(counts[self.codes])   # document frequency per row
        self.distinct = self.weighting.transform(counts).tocsr()
        self.cells: dict[str, tuple[np.ndarray, list[np.ndarray], np.ndarray]] = {}
        self._svd: TruncatedSVD | None = None
        self._dense: np.ndarray | None = None
        self._rows_dense: tuple[object, np.ndarray] | None = None

    _last: ClassVar[tuple[str, SimilarityIndex] | None] = None

    @classmethod
    def for_pool(cls, pool_texts: list[str], labels: np.ndarray) -> SimilarityIndex:
        digest = hashlib.sha256(pd.util.hash_pandas_object(
            pd.DataFrame({"text": pool_texts, "label": labels}), index=False).to_numpy()).hexdigest()
        if cls._last is None or cls._last[0] != digest:
            cls._last = (digest, cls(pool_texts))
        return cls._last[1]

    def transform(self, texts: list[str]):
        """(distinct TF-IDF rows, codes): text i is row codes[i]."""
        if texts == self.texts:
            return self.distinct, self.codes
        codes, unique = pd.factorize(pd.Series(texts, dtype=object))
        return self.weighting.transform(self.counter.transform(unique)).tocsr(), codes

    def pool_dense(self) -> np.ndarray:
        """Unit-length vectors of the distinct pool texts in their top singular directions."""
        if self._dense is None:
            self._svd = TruncatedSVD(min(_SVD_DIMS, self.distinct.shape[1] - 1), random_state=0)
            self._dense = normalize(self._svd.fit_transform(self.distinct).astype(np.float32))
        return self._dense

    def dense(self, matrix) -> np.ndarray:
        """`matrix` (TF-IDF rows) in the pool's reduced space, unit length."""
        if matrix is self.distinct:
            return self.pool_dense()
        if self._rows_dense is None or self._rows_dense[0] is not matrix:  # once per call's rows
            self.pool_dense()
            self._rows_dense = (matrix, normalize(self._svd.transform(matrix).astype(np.float32)))
        return self._rows_dense[1]


def similarity_tfidf(pool_texts: list[str], row_texts: list[str]):
    """(pool_distinct, pool_codes, rows_distinct, row_codes): the TF-IDF rows of the distinct
    pool and row texts, fitted on the pool; pool row i is pool_distinct[pool_codes[i]]."""
    index = SimilarityIndex(pool_texts)
    return (index.distinct, index.codes, *index.transform(row_texts))


def _cells(class_dense: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """About sqrt(count) k-means cells of unit vectors: (centroids, members of each cell, the
    `_PROBES` cells nearest each cell)."""
    cells = max(2, int(np.sqrt(len(class_dense))))
    kmeans = MiniBatchKMeans(cells, random_state=0, n_init=1, batch_size=4096).fit(class_dense)
    centroids = normalize(kmeans.cluster_centers_).astype(np.float32)
    members = [np.flatnonzero(kmeans.labels_ == c) for c in range(cells)]
    probes = np.argsort(-(centroids @ centroids.T), axis=1)[:, :_PROBES]
    return centroids, members, probes


def _nearest_approximate(index: SimilarityIndex, class_positions: np.ndarray, rows_distinct,
                         row_codes: np.ndarray, n: int, row_pairs: np.ndarray,
                         pool_pairs: np.ndarray) -> list[list[int]]:
    """`_nearest` for a large class, approximately, and over distinct (query, target) pairs:
    each distinct pair of the pool is a candidate once (its first row), and rows with the same
    pair get the same examples (a row's own id has its pair, so it is excluded with the pair).

    An inverted-file index: the class's distinct pairs are clustered into about sqrt(count)
    cells of the reduced vectors; a row is compared with the pairs of the `_PROBES` cells
    nearest its own cell, and the best `_RERANK` of those are ordered by the exact TF-IDF
    cosine (ties: lower position). Cost grows as rows x sqrt(pool), not rows x pool. Only the
    distinct texts' vectors are gathered (no matrix of every row)."""
    _, first = np.unique(pool_pairs[class_positions], return_index=True)
    first.sort()
    class_positions = class_positions[first]
    class_codes = index.codes[class_positions]
    class_matrix, class_dense = index.distinct[class_codes], index.pool_dense()[class_codes]
    distinct_pairs, row_first, row_of = np.unique(row_pairs, return_index=True, return_inverse=True)
    first_codes = row_codes[row_first]
    rows_matrix = rows_distinct[first_codes]
    rows_dense = index.dense(rows_distinct)[first_codes]
    cell_cache = index.cells

    key = hashlib.sha256(class_positions.tobytes()).hexdigest()
    if key not in cell_cache:
        cell_cache[key] = _cells(class_dense)
    centroids, members, probes = cell_cache[key]
    cells = len(members)
    row_cell = np.concatenate([np.argmax(rows_dense[i:i + 8192] @ centroids.T, axis=1)
                               for i in range(0, len(rows_dense), 8192)])
    picks = np.full((len(distinct_pairs), n), -1, dtype=np.int64)
    for cell in range(cells):
        candidates = np.sort(np.concatenate([members[c] for c in probes[cell]]))
        keep = min(len(candidates), _RERANK)
        cell_rows = np.flatnonzero(row_cell == cell)
        for start in range(0, len(cell_rows), _CHUNK):
            chunk = cell_rows[start:start + _CHUNK]
            approx = rows_dense[chunk] @ class_dense[candidates].T
            top = (np.argpartition(-approx, keep - 1, axis=1)[:, :keep] if keep < len(candidates)
                   else np.tile(np.arange(len(candidates)), (len(chunk), 1)))
            local = candidates[top]                            # chunk x keep
            exact = np.asarray(rows_matrix[np.repeat(chunk, keep)].multiply(
                class_matrix[local.ravel()]).sum(axis=1)).reshape(len(chunk), keep)
            # the row's own pair never; then cosine down, lower position first
            own = pool_pairs[class_positions[local]] == distinct_pairs[chunk, None]
            order = np.lexsort((local, -exact, own), axis=1)[:, :n]
            chosen = np.take_along_axis(local, order, axis=1)
            valid = ~np.take_along_axis(own, order, axis=1)
            picks[chunk] = np.where(valid, class_positions[chosen], -1)
    short = np.flatnonzero((picks < 0).any(axis=1))
    for i in short:   # too few candidates in the probed cells: rank the whole class
        sims = (class_matrix @ rows_matrix[i].T).toarray().ravel()
        picks[i] = _first_allowed(class_positions[np.argsort(-sims, kind="stable")], n,
                                  distinct_pairs[i], "", pool_pairs, None)
    return picks[row_of].tolist()


def select_examples(rows: pd.DataFrame, pool: pd.DataFrame, *, k: int,
                    strategy: Literal["fixed", "similar"] = "fixed", seed: int = 0,
                    exclude_same_id: bool = False) -> list[list[int]]:
    """ICL examples for each row of `rows`: positional indices into `pool`.

    The caller passes the training set as `pool` (examples only ever come from labelled
    training rows). Each row gets k - k//2 "yes" and k//2 "no" examples, ordered yes, no,
    yes, no, ... Never returned: a pool row whose (query_text, target_text) equals the row's,
    and, with `exclude_same_id` (rows and pool are the same split), the pool row with its id.

    fixed: the reference's fixed examples, one list chosen from `seed` (different languages
    where possible) and shared by every row; a row that is itself excluded from it gets the
    next example of the same class in the seeded order.
    similar: per class, the nearest pool rows by TF-IDF cosine (char_wb 2-4-grams of
    query_text + " " + target_text, fitted on the pool); ties go to the lower pool position.
    The nearest neighbours are taken whatever their language; `seed` only matters for fixed.
    Above EXACT_SEARCH_MAX_POOL rows in a class the search is approximate (an inverted-file
    index; see `_nearest_approximate`).
    """
    if k < 2:
        raise ValueError("ICL needs k >= 2 (at least one yes and one no example)")
    labels = _labels(pool)
    need = {1: k - k // 2, 0: k // 2}
    positions = {c: np.flatnonzero(labels == c) for c in need}
    for c, word in ((1, "yes"), (0, "no")):
        if len(positions[c]) < need[c] + 1:
            raise HarnessError(f"ICL: the training pool has {len(positions[c])} '{word}' rows; "
                               f"k={k} needs at least {need[c] + 1}")
    pool_pairs, row_pairs = _pair_keys(pool), _pair_keys(rows)
    row_ids = rows["id"].astype(str).to_numpy(dtype=object)
    pool_ids = pool["id"].astype(str).to_numpy(dtype=object) if exclude_same_id else None
    per_class: dict[int, list[list[int]]] = {}
    if strategy == "fixed":
        rankings = _diverse_rankings(pool, labels, need, seed)
        for c in need:
            per_class[c] = [_first_allowed(rankings[c], need[c], row_pairs[i], row_ids[i],
                                           pool_pairs, pool_ids) for i in range(len(rows))]
    elif strategy == "similar":
        index = SimilarityIndex.for_pool(_similarity_text(pool), labels)
        rows_distinct, row_codes = index.transform(_similarity_text(rows))
        exclusions = (row_pairs, row_ids, pool_pairs, pool_ids)
        for c in need:
            if len(positions[c]) > EXACT_SEARCH_MAX_POOL:
                per_class[c] = _nearest_approximate(index, positions[c], rows_distinct, row_codes,
                                                    need[c], row_pairs, pool_pairs)
            else:
                per_class[c] = _nearest(rows_distinct[row_codes],
                                        index.distinct[index.codes[positions[c]]], positions[c],
                                        need[c], *exclusions)
    else:
        raise ValueError(f"unknown ICL strategy {strategy!r}")
    sequence = _interleave(need)
    out = []
    for i in range(len(rows)):
        if any(len(per_class[c][i]) < need[c] for c in need):
            raise HarnessError(f"ICL: not enough allowed examples for row {row_ids[i]}")
        taken = {c: iter(per_class[c][i]) for c in need}
        out.append([next(taken[c]) for c in sequence])
    return out


def to_examples(pool: pd.DataFrame, selections: Sequence[Sequence[int]]) -> list[list[Example]]:
    """`select_examples` output turned into Example lists for `build_prompts`."""
    query = pool["query_text"].fillna("").astype(str).tolist()
    target = pool["target_text"].fillna("").astype(str).tolist()
    labels = _labels(pool)
    return [[Example(query[j], target[j], int(labels[j])) for j in picks] for picks in selections]


__all__ = [
    "ANSWERS", "TEMPLATE_VERSION", "Example", "build_prompts", "instruction", "load_text",
    "prompt_texts", "select_examples", "similarity_tfidf", "to_examples",
]

"""Paired comparisons of two pipeline variants scored on the same evaluation rows.

F1 is the F1 of the positive class, 2·TP / (2·TP + FP + FN). Where it is undefined (no positive
labels and no positive predictions) it is 0.0, as scikit-learn's ``zero_division=0`` gives;
the bootstrap applies the same rule to every resample.

Bootstraps never materialise resampled indices. Each resampling unit (a row, or a group of rows
for the cluster bootstrap) is reduced to its vector of TP/FP/FN counts for every system;
identical vectors are merged, and a resample is a multinomial draw of how many times each
distinct vector is picked. That has exactly the distribution of drawing units with replacement,
and since all systems' counts sit in the same vector, every system sees the same resample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy.stats import binom
from scipy.stats import t as student_t
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from harness.stats import percentile_interval, seed_interval

Groups = Sequence[object] | np.ndarray | pd.Series | Literal["group", "language"] | None
Verdict = Literal["helps", "hurts", "no detectable difference", "untested: one seed"]
UNTESTED: Verdict = "untested: one seed"

_CHUNK_CELLS = 2_000_000  # resamples x distinct units held in memory at once


@dataclass(frozen=True, eq=False)
class Aligned:
    """Two systems' predictions on the same rows, in the row order of table ``a``."""

    ids: np.ndarray  # str ids
    labels: np.ndarray  # 0/1
    pred_a: np.ndarray  # 0/1
    pred_b: np.ndarray  # 0/1
    language: np.ndarray | None = None
    group: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class PairedResult:
    """F1(b) − F1(a) with a ``confidence`` percentile interval [low, high] and a two-sided p."""

    difference: float
    low: float
    high: float
    p_value: float
    n: int
    n_groups: int | None  # None for the row bootstrap
    method: str
    f1_a: float
    f1_b: float
    confidence: float


@dataclass(frozen=True)
class McNemarResult:
    """McNemar test on the discordant rows; b01: a wrong and b right, b10: a right and b wrong."""

    statistic: float
    p_value: float
    mid_p: float
    b01: int
    b10: int
    n: int
    exact: bool
    method: str


@dataclass(frozen=True)
class PooledResult:
    """Mean over seeds of F1(b) − F1(a), with row-bootstrap and (>= 3 seeds) seed t intervals.

    [low, high] and p_value are the test the verdict uses: with >= 2 seeds they combine both
    sources of error (see :func:`pooled_over_seeds`); with one seed they are the row bootstrap's
    and carry no training variance, so :func:`verdict` withholds a verdict.
    [rows_low, rows_high] is the row bootstrap alone, [t_low, t_high] the seed spread alone.
    """

    difference: float
    low: float
    high: float
    p_value: float
    rows_low: float
    rows_high: float
    df: float | None  # Welch-Satterthwaite degrees of freedom of the combined interval
    t_low: float | None
    t_high: float | None
    per_seed: tuple[float, ...]
    permutation_p: float | None
    n: int
    n_groups: int | None
    n_seeds: int
    method: str
    confidence: float


def align(a: pd.DataFrame, b: pd.DataFrame, *, key: str = "id") -> Aligned:
    """Join two per-row prediction tables on ``key`` and return them as an :class:`Aligned`.

    Each table has ``key``, ``label`` and ``pred`` (or the harness's ``prediction``), all 0/1,
    and optionally ``language`` and ``group`` (taken from ``a``, else ``b``; they must agree
    where both have them). Ids are compared as strings. Raises ValueError (one line) on
    missing columns, no rows, duplicate or differing ids, non-0/1 values, or labels that disagree.
    """
    tables = {"a": _checked(a, "a", key), "b": _checked(b, "b", key)}
    if tables["a"].empty and tables["b"].empty:
        raise ValueError("no rows to compare: both tables are empty")
    only_a = tables["a"].index.difference(tables["b"].index)
    only_b = tables["b"].index.difference(tables["a"].index)
    if len(only_a) or len(only_b):
        examples = ", ".join(f"{len(ids)} only in {side}" + (f" (e.g. {ids[0]!r})" if len(ids) else "")
                             for side, ids in (("a", only_a), ("b", only_b)))
        raise ValueError(f"ids differ: {examples}")
    ta, tb = tables["a"], tables["b"].loc[tables["a"].index]
    extra = {}
    for column in ("label", "language", "group"):
        if column in ta and column in tb:
            differ = (ta[column].ne(tb[column]) & ~(ta[column].isna() & tb[column].isna())).to_numpy()
            if differ.any():
                first = ta.index[int(np.argmax(differ))]
                raise ValueError(f"{column}s disagree on {int(differ.sum())} rows (e.g. id {first!r})")
        source = ta if column in ta else tb if column in tb else None
        extra[column] = None if source is None else source[column].to_numpy()
    return Aligned(ids=ta.index.to_numpy(dtype=object), labels=extra["label"].astype(np.int8),
                   pred_a=ta["pred"].to_numpy(dtype=np.int8), pred_b=tb["pred"].to_numpy(dtype=np.int8),
                   language=extra["language"], group=extra["group"])


def paired_f1_difference(aligned: Aligned, *, n_resamples: int = 2000, seed: int = 0,
                         groups: Groups = None, confidence: float = 0.95) -> PairedResult:
    """F1(b) − F1(a) with a paired percentile-bootstrap interval and a two-sided bootstrap p.

    ``groups``: None resamples rows; an array of one label per row, or "group" / "language"
    (the aligned column), resamples whole groups instead (cluster bootstrap), which is what
    rows sharing a query need. p is twice the smaller share of resampled differences on either
    side of zero (ties count on both sides; capped at 1), so p < 1 − confidence goes with an
    interval that excludes 0. Identical systems give 0, [0, 0] and p = 1.
    """
    _check_options(n_resamples, confidence)
    columns = _count_columns(aligned.labels, np.stack([aligned.pred_a, aligned.pred_b]))
    codes, n_groups = _group_codes(aligned, groups)
    f1 = _f1(columns.sum(axis=0))
    boot = _bootstrap_f1(columns, codes, n_resamples, seed)
    differences = boot[:, 1] - boot[:, 0]
    low, high = percentile_interval(differences, level=confidence)
    return PairedResult(difference=float(f1[1] - f1[0]), low=low, high=high,
                        p_value=_two_sided_p(differences), n=aligned.n, n_groups=n_groups,
                        method=_method(n_groups), f1_a=float(f1[0]), f1_b=float(f1[1]),
                        confidence=confidence)


def mcnemar_test(aligned: Aligned) -> McNemarResult:
    """McNemar test of whether a and b are right on the same rows as often.

    Exact binomial test when there are fewer than 25 discordant rows, else chi-square with
    continuity correction (statsmodels). ``mid_p`` is always the exact-binomial two-sided mid-p,
    less conservative than the exact p. No discordant rows give p = mid_p = 1.
    """
    right_a = aligned.pred_a == aligned.labels
    right_b = aligned.pred_b == aligned.labels
    b01 = int(np.sum(~right_a & right_b))
    b10 = int(np.sum(right_a & ~right_b))
    discordant = b01 + b10
    exact = discordant < 25
    if discordant == 0:
        statistic, p_value = 0.0, 1.0
    else:
        table = [[int(np.sum(right_a & right_b)), b10], [b01, int(np.sum(~right_a & ~right_b))]]
        bunch = mcnemar(table, exact=exact, correction=True)
        statistic, p_value = float(bunch.statistic), float(bunch.pvalue)
    return McNemarResult(statistic=statistic, p_value=min(p_value, 1.0),
                         mid_p=_mid_p(min(b01, b10), discordant), b01=b01, b10=b10, n=aligned.n,
                         exact=exact, method="exact binomial" if exact else "chi2 with continuity correction")


def pooled_over_seeds(pairs: Sequence[Aligned], *, n_resamples: int = 2000, seed: int = 0,
                      groups: Groups = None, confidence: float = 0.95) -> PooledResult:
    """Mean over seeds of F1(b) − F1(a), for several seeds of one comparison on the same rows.

    [rows_low, rows_high] comes from a bootstrap over rows (or groups, as in
    :func:`paired_f1_difference`) that uses the same resample for every seed and takes the mean
    of the per-seed differences in each resample: row-sampling uncertainty of the seed-averaged
    difference, with standard error se_rows. The per-seed differences, all on the same rows,
    vary only with training (adapter init, data order): se_seeds = sd / sqrt(k). With k >= 2
    seeds, [low, high] is mean ± t(df) · sqrt(se_rows² + se_seeds²), df by Welch-Satterthwaite
    (se_rows counted as known), and p_value the matching two-sided t test: both sources of error
    in one interval. With one seed [low, high] and p_value are the row bootstrap's.
    With >= 3 seeds, [t_low, t_high] is a Student-t interval over the per-seed
    differences (seed-to-seed spread); otherwise None. With >= 5 seeds, permutation_p is an
    exact sign-flip test of mean difference 0 across seeds (all 2^k flips; random 20000 beyond
    16 seeds); its smallest possible value is 2 / 2^k, e.g. 0.0625 for 5 seeds. Pairs may list
    rows in different orders; ids and labels must match.
    """
    if not pairs:
        raise ValueError("pooled_over_seeds needs at least one pair")
    _check_options(n_resamples, confidence)
    first = pairs[0]
    index = pd.Index(first.ids)
    preds = []
    for number, pair in enumerate(pairs):
        order = index.get_indexer(pair.ids)
        if pair.n != first.n or (order < 0).any():
            raise ValueError(f"pair {number} is not on the same ids as pair 0")
        position = np.empty(first.n, dtype=np.intp)
        position[order] = np.arange(first.n)
        if not np.array_equal(pair.labels[position], first.labels):
            raise ValueError(f"pair {number} labels disagree with pair 0")
        preds += [pair.pred_a[position], pair.pred_b[position]]
    columns = _count_columns(first.labels, np.stack(preds))
    codes, n_groups = _group_codes(first, groups)
    f1 = _f1(columns.sum(axis=0))
    per_seed = f1[1::2] - f1[0::2]
    boot = _bootstrap_f1(columns, codes, n_resamples, seed)
    means = (boot[:, 1::2] - boot[:, 0::2]).mean(axis=1)
    rows_low, rows_high = percentile_interval(means, level=confidence)
    if len(pairs) >= 2:
        low, high, p_value, df = _combined_interval(per_seed, float(means.std(ddof=1)), confidence)
    else:
        low, high, p_value, df = rows_low, rows_high, _two_sided_p(means), None
    t_low, t_high = seed_interval(per_seed, level=confidence) if len(pairs) >= 3 else (None, None)
    return PooledResult(difference=float(per_seed.mean()), low=low, high=high,
                        p_value=p_value, rows_low=rows_low, rows_high=rows_high, df=df,
                        t_low=t_low, t_high=t_high,
                        per_seed=tuple(float(d) for d in per_seed),
                        permutation_p=_sign_flip_p(per_seed, seed) if len(pairs) >= 5 else None,
                        n=first.n, n_groups=n_groups, n_seeds=len(pairs), method=_method(n_groups),
                        confidence=confidence)


@dataclass(frozen=True)
class CellResult:
    """Mean F1 over seeds of one system, with a bootstrap interval over the evaluation rows
    (one resample shared by every seed) and the seed-to-seed standard deviation."""

    f1: float
    low: float
    high: float
    seed_sd: float | None  # None with one seed: the interval then carries no training variance
    per_seed: tuple[float, ...]
    n: int
    n_groups: int | None
    method: str


def pooled_f1(frames: Sequence[pd.DataFrame], *, n_resamples: int = 2000, seed: int = 0,
              groups: Groups = None, confidence: float = 0.95) -> CellResult:
    """Mean F1 over several seeds' predictions on the same rows (each frame has id, label,
    prediction and optionally group), with a bootstrap interval that resamples the rows (or,
    with ``groups="group"``, the query groups) once for all seeds."""
    if not frames:
        raise ValueError("pooled_f1 needs at least one prediction table")
    _check_options(n_resamples, confidence)
    pairs = [align(frames[0], frame) for frame in frames]  # each in frame 0's row order
    first = pairs[0]
    columns = _count_columns(first.labels, np.stack([pair.pred_b for pair in pairs]))
    codes, n_groups = _group_codes(first, groups)
    per_seed = _f1(columns.sum(axis=0))
    boot = _bootstrap_f1(columns, codes, n_resamples, seed).mean(axis=1)
    low, high = percentile_interval(boot, level=confidence)
    return CellResult(f1=float(per_seed.mean()), low=low, high=high,
                      seed_sd=float(np.std(per_seed, ddof=1)) if len(frames) > 1 else None,
                      per_seed=tuple(float(f) for f in per_seed), n=first.n, n_groups=n_groups,
                      method=_method(n_groups).replace("paired ", ""))


def bootstrap_system_f1(systems: Sequence[Sequence[pd.DataFrame]], *, n_resamples: int = 2000,
                        seed: int = 0, groups: Groups = None) -> tuple[np.ndarray, np.ndarray]:
    """Seed-averaged F1 of several systems on the same rows, and its bootstrap distribution.

    ``systems[i]`` lists system i's prediction tables (one per seed). Returns (point, boot):
    point has one F1 per system, boot is (n_resamples, systems), every system and seed under the
    same resample of rows (or of groups), so any contrast of systems can be bootstrapped from it.
    """
    _check_options(n_resamples, 0.95)
    frames = [frame for system in systems for frame in system]
    if not frames:
        raise ValueError("bootstrap_system_f1 needs at least one prediction table")
    pairs = [align(frames[0], frame) for frame in frames]
    columns = _count_columns(pairs[0].labels, np.stack([pair.pred_b for pair in pairs]))
    codes, _ = _group_codes(pairs[0], groups)
    f1 = _f1(columns.sum(axis=0))
    boot = _bootstrap_f1(columns, codes, n_resamples, seed)
    bounds = np.cumsum([0, *(len(system) for system in systems)])
    point = np.array([f1[a:b].mean() for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
    means = np.stack([boot[:, a:b].mean(axis=1) for a, b in zip(bounds[:-1], bounds[1:], strict=True)],
                     axis=1)
    return point, means


# A trial predicting "yes" (or "no") on more than this share of rows learned (nearly) one class.
ONE_CLASS_SHARE = 0.98


def learned_nothing(predictions: pd.DataFrame, *, n_resamples: int = 1000,
                    seed: int = 0) -> str | None:
    """Why a trial's predictions show it learned nothing, or None: it predicts (nearly) one
    class, or its F1 is not above the all-"yes" F1 at the one-sided 95% level: the lower end of
    the paired 90% interval (cluster bootstrap over query groups where the table has a ``group``
    column) is not above 0. One-sided because the question is directional ("is it above?");
    the two-sided 95% interval flagged trials that rank well but sit near a high all-"yes" F1."""
    predicted = predictions["prediction"].to_numpy(dtype=int)
    if not len(predicted):
        return None
    share = float(predicted.mean())
    if share >= ONE_CLASS_SHARE or share <= 1 - ONE_CLASS_SHARE:
        return f"predicts one class ({share:.1%} yes)"
    all_yes = predictions.assign(prediction=1)
    pair = align(all_yes, predictions)
    groups = "group" if pair.group is not None and len(set(pair.group)) > 1 else None
    result = paired_f1_difference(pair, n_resamples=n_resamples, seed=seed, groups=groups,
                                  confidence=0.90)
    if result.low <= 0:
        return (f"F1 {result.f1_b:.3f} not above the all-yes F1 {result.f1_a:.3f} "
                f"(difference {result.difference:+.3f}, one-sided 95% lower bound "
                f"{result.low:+.3f})")
    return None


def holm(p_values: Mapping[str, float]) -> dict[str, float]:
    """Holm-adjusted p-values (statsmodels ``multipletests``, method="holm"), same keys and order."""
    if not p_values:
        return {}
    values = np.asarray(list(p_values.values()), dtype=float)
    if np.isnan(values).any() or (values < 0).any() or (values > 1).any():
        raise ValueError("p-values must lie in [0, 1]")
    adjusted = multipletests(values, method="holm")[1]
    return {name: float(p) for name, p in zip(p_values, adjusted, strict=True)}


def verdict(result: PairedResult | PooledResult, *, alpha: float = 0.05,
            p_adjusted: float | None = None) -> Verdict:
    """"helps" / "hurts" when the interval excludes 0 on that side, else "no detectable difference".

    The interval is the result's own (at its ``confidence``): for a PooledResult of >= 2 seeds
    the combined rows-and-seeds interval. A PooledResult of one seed gets no verdict
    (UNTESTED): a row bootstrap cannot see training variance, and on the tiny model such
    single-seed markers fired on about one null comparison in seven (bench/calibration.py).
    When ``p_adjusted`` (e.g. from :func:`holm`) is given it must also be below ``alpha``.
    The point estimate alone never decides.
    """
    if isinstance(result, PooledResult) and result.n_seeds < 2:
        return UNTESTED
    if p_adjusted is not None and not p_adjusted < alpha:
        return "no detectable difference"
    if result.low > 0:
        return "helps"
    if result.high < 0:
        return "hurts"
    return "no detectable difference"


def _checked(frame: pd.DataFrame, side: str, key: str) -> pd.DataFrame:
    pred = "pred" if "pred" in frame else "prediction"
    missing = [c for c in (key, "label", pred) if c not in frame]
    if missing:
        raise ValueError(f"table {side} lacks column(s) {', '.join(missing)} (pred may be 'prediction')")
    keep = [c for c in ("language", "group") if c in frame]
    table = frame[[key, "label", pred, *keep]].rename(columns={pred: "pred"})
    table.index = pd.Index(frame[key].astype(str).to_numpy(), name=key)
    if table.index.has_duplicates:
        raise ValueError(f"table {side} has duplicate ids (e.g. {table.index[table.index.duplicated()][0]!r})")
    for column in ("label", "pred"):
        values = table[column]
        bad = values.isna() | ~values.isin([0, 1])
        if bad.any():
            raise ValueError(f"table {side}: {column} must be 0/1 with no missing values "
                             f"({int(bad.sum())} rows are not, e.g. id {table.index[bad.to_numpy()][0]!r})")
        table[column] = values.astype(np.int8)
    return table.drop(columns=key)


def _check_options(n_resamples: int, confidence: float) -> None:
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")


def _count_columns(labels: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """(rows, 3·systems) int array: TP, FP, FN indicators of each system in turn."""
    positive = labels.astype(bool)
    predicted = preds.astype(bool)  # (systems, rows)
    stacked = np.stack([predicted & positive, predicted & ~positive, ~predicted & positive], axis=1)
    return stacked.reshape(3 * len(predicted), len(labels)).T.astype(np.int64)


def _f1(counts: np.ndarray) -> np.ndarray:
    """F1 of every system from (..., 3·systems) TP/FP/FN counts; 0 where undefined."""
    counts = counts.reshape(*counts.shape[:-1], -1, 3)
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    denominator = 2 * tp + fp + fn
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)


def _group_codes(aligned: Aligned, groups: Groups) -> tuple[np.ndarray | None, int | None]:
    if groups is None:
        return None, None
    if isinstance(groups, str):
        if groups not in ("group", "language") or getattr(aligned, groups) is None:
            raise ValueError(f"groups={groups!r}: the aligned rows have no such column")
        groups = getattr(aligned, groups)
    values = np.asarray(groups)
    if len(values) != aligned.n:
        raise ValueError(f"groups has {len(values)} entries for {aligned.n} rows")
    _, codes = np.unique(values.astype(str), return_inverse=True)
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    if n_groups < 2:
        raise ValueError(f"the cluster bootstrap needs at least 2 groups, got {n_groups}")
    return codes, n_groups


def _bootstrap_f1(columns: np.ndarray, codes: np.ndarray | None, n_resamples: int,
                  seed: int) -> np.ndarray:
    """(n_resamples, systems) F1 of resamples of rows (codes None) or of groups of rows."""
    if codes is not None:
        units = np.zeros((int(codes.max()) + 1, columns.shape[1]), dtype=np.int64)
        np.add.at(units, codes, columns)
    else:
        units = columns
    if len(units) == 0:
        return np.zeros((n_resamples, columns.shape[1] // 3))
    distinct, multiplicity = np.unique(units, axis=0, return_counts=True)
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_CELLS // len(distinct))
    out = []
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        weights = rng.multinomial(len(units), multiplicity / len(units), size=size)
        out.append(_f1(weights @ distinct))
    return np.concatenate(out)


def _combined_interval(per_seed: np.ndarray, se_rows: float,
                       confidence: float) -> tuple[float, float, float, float]:
    """mean ± t(df)·se with se² = se_rows² + var(per_seed)/k; returns low, high, p, df."""
    k, mean = len(per_seed), float(per_seed.mean())
    se_seeds2 = float(per_seed.var(ddof=1)) / k
    se = float(np.sqrt(se_rows**2 + se_seeds2))
    if se == 0:
        return mean, mean, (1.0 if mean == 0 else 0.0), float("inf")
    df = float("inf") if se_seeds2 == 0 else se**4 / (se_seeds2**2 / (k - 1))
    half = float(student_t.ppf(0.5 + confidence / 2, df)) * se
    p_value = float(min(1.0, 2 * student_t.sf(abs(mean) / se, df)))
    return mean - half, mean + half, p_value, df


def _two_sided_p(samples: np.ndarray) -> float:
    return float(min(1.0, 2 * min(np.mean(samples <= 0), np.mean(samples >= 0))))


def _mid_p(smaller: int, discordant: int) -> float:
    if discordant == 0:
        return 1.0
    return float(min(1.0, 2 * (binom.cdf(smaller, discordant, 0.5) - 0.5 * binom.pmf(smaller, discordant, 0.5))))


def _sign_flip_p(differences: np.ndarray, seed: int) -> float:
    k = len(differences)
    if k <= 16:
        signs = 1 - 2 * ((np.arange(2**k)[:, None] >> np.arange(k)) & 1)
    else:
        signs = np.random.default_rng(seed).choice([-1, 1], size=(20_000, k))
    observed = abs(differences.mean())
    flipped = np.abs(signs @ differences) / k
    return float(np.mean(flipped >= observed - 1e-12))


def _method(n_groups: int | None) -> str:
    return "paired row bootstrap" if n_groups is None else "paired cluster bootstrap"

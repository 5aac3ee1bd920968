"""Carving labelled evaluation data out of train: query-grouped holdout, subsample, language out."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from harness.errors import DataError


def normalised_query(frame: pd.DataFrame) -> pd.Series:
    """origin_query lower-cased with runs of whitespace collapsed to one space (the group key)."""
    return frame["origin_query"].str.lower().str.split().str.join(" ")


def strata(frame: pd.DataFrame) -> pd.Series:
    """`language|label` per row (label -1 where missing)."""
    return frame["language"].astype("str") + "|" + frame["label"].fillna(-1).astype("int64").astype("str")


def holdout_split(frame: pd.DataFrame, *, fraction: float,
                  seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train part, eval part): no normalised query on both sides, stratified by language and label.

    StratifiedGroupKFold with n_splits = round(1 / fraction) (at least 2); fold `seed % n_splits`
    of a shuffle seeded by `seed` is the eval part. Needs a label on every row.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"holdout fraction must be between 0 and 1, got {fraction}")
    unlabelled = int(frame["label"].isna().sum())
    if unlabelled:
        raise DataError(f"a holdout needs a label on every row; {unlabelled:,} of {len(frame):,} "
                        "rows have none")
    n_splits = max(2, round(1 / fraction))
    groups = pd.factorize(normalised_query(frame))[0]
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    if n_groups < n_splits:
        raise DataError(f"a holdout of {fraction:g} needs at least {n_splits} distinct queries, "
                        f"found {n_groups}")
    classes = pd.factorize(strata(frame))[0]
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # Strata smaller than n_splits are expected with rare languages; the split still works.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        train_idx, eval_idx = list(folds.split(np.zeros(len(frame)), classes, groups))[seed % n_splits]
    return _rows(frame, train_idx), _rows(frame, eval_idx)


def stratified_subsample(frame: pd.DataFrame, *, n: int, seed: int) -> pd.DataFrame:
    """`n` rows whose language x label mix matches the frame's (largest-remainder quotas).

    Returns `frame` itself when n >= len(frame); kept rows stay in their original order.
    """
    if n <= 0:
        raise ValueError(f"subsample size must be positive, got {n}")
    if n >= len(frame):
        return frame
    codes, _ = pd.factorize(strata(frame))
    counts = np.bincount(codes)
    exact = counts * n / len(frame)
    quotas = np.floor(exact).astype(int)
    # Hand the remaining rows to the strata with the largest fractional parts (ties: first stratum).
    remainder_order = np.argsort(-(exact - quotas), kind="stable")
    quotas[remainder_order[: n - int(quotas.sum())]] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(codes == code), size=quota, replace=False)
              for code, quota in enumerate(quotas) if quota]
    return _rows(frame, np.sort(np.concatenate(chosen)))


def leave_language_out(frame: pd.DataFrame, *,
                       language: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows of every other language, rows of `language`) for leave-one-language-out scoring."""
    mask = (frame["language"] == language).to_numpy()
    if not mask.any():
        present = ", ".join(sorted(frame["language"].unique()))
        raise DataError(f"no rows in language {language!r} (languages present: {present})")
    return _rows(frame, np.flatnonzero(~mask)), _rows(frame, np.flatnonzero(mask))


def _rows(frame: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
    return frame.iloc[positions].reset_index(drop=True)

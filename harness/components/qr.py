"""QR (Quality Refinement): drop training rows whose label looks wrong.

Signals (the DILAB reference rules): TF-IDF cosine and token Jaccard between the normalised query and
target (category path for QC, item title for QI), per-language thresholds from class quantiles,
and optionally a checker model's p(yes). QR is only ever applied to TRAINING rows; the caller
guarantees that evaluation rows never reach `refine`.

Two modes (`components.QR.mode`):

* ``reference`` -- the DILAB rules exactly: a row is flagged when ANY signal fires: label 0 with
  cosine >= HI_COS or Jaccard >= HI_JAC; label 1 with cosine < LO_COS and Jaccard < LO_JAC; and,
  with predictions, predicted label != label, p(yes) >= p_yes_hi on label 0, or
  p(yes) <= p_yes_lo on label 1.
* ``default`` -- lexical overlap alone never removes a row that a model does not doubt, because
  relevant pairs that share no words (synonyms, translations, other scripts) and irrelevant
  siblings that share many (the same parent category) are exactly what the lexical signals get
  wrong (open question 3 of the paper). With predictions a row is flagged when the model is
  confidently wrong (p(yes) >= p_yes_hi on label 0, <= p_yes_lo on label 1), or when the model
  disagrees (p(yes) on the wrong side of 0.5, or the given prediction differs) AND a reference
  lexical signal points the same way. Without predictions both lexical signals must agree
  (label 0: cosine >= HI_COS and Jaccard >= HI_JAC; label 1 as in the reference). The checker's
  predictions should be out-of-fold (`out_of_fold_p_yes`); `in_sample: true` is the reference's
  train-and-predict-the-same-rows procedure. tests/components/test_qr.py measures both modes on a
  noisy toy set: the default's flagging precision is at least the reference's.

Rows with a missing label are never flagged. Cosines are clipped to [0, 1] against round-off.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.preprocessing import normalize

from harness.cache import frame_fingerprint
from harness.components.base import Component, Context, RowsResult, Strict
from harness.data import LANGUAGES, TASKS, target_column
from harness.errors import DataError

Probability = Annotated[float, Field(ge=0, le=1)]
Language = Literal[LANGUAGES]  # type: ignore[valid-type]


class QRThresholds(Strict):
    hi_cos: Probability
    hi_jac: Probability
    lo_cos: Probability
    lo_jac: Probability


class QRConfig(Strict):
    mode: Literal["default", "reference"] = "default"
    # Use a checker model's p(yes) as well as the lexical signals.
    use_model: bool = True
    # Out-of-fold prediction with this many folds; `in_sample: true` is the reference's
    # train-and-predict-the-same-rows procedure.
    folds: Annotated[int, Field(ge=2)] = 3
    in_sample: bool = False
    # Checker model; null uses the sweep's model, LoRA and training settings.
    checker_model: str | None = None
    # "auto": per-language class quantiles (the reference rule); or fixed thresholds per language.
    thresholds: Literal["auto"] | dict[Language, QRThresholds] = "auto"
    quantile_hi: Probability = 0.90
    quantile_lo: Probability = 0.10
    min_class_rows: Annotated[int, Field(ge=1)] = 100
    p_yes_hi: Probability = 0.9
    p_yes_lo: Probability = 0.1

FitPredict = Callable[[pd.DataFrame, pd.DataFrame], np.ndarray]

# Reference constants: fallbacks for classes with too few rows, then clamps.
FALLBACK_HI = (0.35, 0.20)  # HI_COS, HI_JAC when fewer than min_class_rows label-0 rows
FALLBACK_LO = (0.12, 0.05)  # LO_COS, LO_JAC when fewer than min_class_rows label-1 rows
FLOOR_HI = (0.21, 0.12)  # HI_* = max(HI_*, floor)
CAP_LO = (0.35, 0.20)  # LO_* = min(LO_*, cap)
MIN_DF, MAX_DF, NGRAM_RANGE = 3, 0.9, (1, 2)  # the reference TfidfVectorizer

_NOT_KEPT = re.compile(
    r"[^a-z0-9\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3áéíóúñüàèìòùçäöß\s/.:\-]")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class QRResult:
    kept: pd.DataFrame  # rows not flagged, original columns, index reset
    audit: pd.DataFrame  # one row per input row (see flag_rows)
    thresholds: dict[str, QRThresholds]


def normalize_text(texts: pd.Series) -> pd.Series:
    """Lower-case, replace characters outside the kept set by spaces, collapse spaces, strip."""
    text = texts.fillna("").astype(str).str.lower()
    text = text.str.replace(_NOT_KEPT, " ", regex=True)
    return text.str.replace(_SPACES, " ", regex=True).str.strip()


def _jaccard(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """|A & B| / max(1, |A | B|) of the space-split token sets of each pair of texts."""
    out = np.zeros(len(left))
    for i, (a, b) in enumerate(zip(left, right, strict=True)):
        tokens_a, tokens_b = set(a.split()), set(b.split())
        union = len(tokens_a | tokens_b)
        if union:
            out[i] = len(tokens_a & tokens_b) / union
    return out


def _tfidf(texts: pd.Series, weights: np.ndarray) -> sparse.csr_matrix | None:
    """L2-normalised rows of `TfidfVectorizer(min_df=3, max_df=0.9, ngram_range=(1, 2))` fitted
    on a corpus holding texts[i] weights[i] times, computed once per distinct text (the same
    numbers as fitting the full corpus). None when no term survives the pruning."""
    n_docs = int(weights.sum())
    try:
        counts = CountVectorizer(ngram_range=NGRAM_RANGE).fit_transform(texts).astype(float)
    except ValueError:  # empty vocabulary
        return None
    present = counts.copy()
    present.data[:] = 1.0
    doc_freq = present.T @ weights
    keep = (doc_freq >= MIN_DF) & (doc_freq <= MAX_DF * n_docs)
    if not keep.any():
        return None
    idf = np.log((n_docs + 1) / (doc_freq[keep] + 1)) + 1.0
    return normalize(counts[:, keep] @ sparse.diags(idf), norm="l2").tocsr()


def lexical_signals(queries: pd.Series, targets: pd.Series) -> pd.DataFrame:
    """TF-IDF cosine and token Jaccard of each (query, target) pair, on normalised text.

    The vectorizer is fitted on all normalised queries followed by all normalised targets.
    Work is done once per distinct text and per distinct pair (category paths repeat a lot).
    """
    if len(queries) != len(targets):
        raise ValueError(f"{len(queries)} queries but {len(targets)} targets")
    n = len(queries)
    raw = pd.concat([queries, targets], ignore_index=True).fillna("").astype(str)
    raw_codes, raw_texts = pd.factorize(raw)
    norm_codes, uniques = pd.factorize(normalize_text(pd.Series(raw_texts, dtype=str)))
    texts = np.asarray(uniques, dtype=object)
    codes = norm_codes[raw_codes]
    pair_key = codes[:n].astype(np.int64) * len(texts) + codes[n:]
    pairs, pair_of_row = np.unique(pair_key, return_inverse=True)
    left, right = pairs // len(texts), pairs % len(texts)
    vectors = _tfidf(pd.Series(texts), np.bincount(codes, minlength=len(texts)).astype(float))
    if vectors is None:
        cosine = np.zeros(len(pairs))
    else:
        cosine = np.asarray(vectors[left].multiply(vectors[right]).sum(axis=1)).ravel()
    jaccard = _jaccard(texts[left], texts[right])
    return pd.DataFrame({"cosine": np.clip(cosine, 0.0, 1.0)[pair_of_row],
                         "jaccard": jaccard[pair_of_row]}, index=queries.index)


def _label_array(labels: pd.Series | np.ndarray) -> np.ndarray:
    return pd.Series(labels).astype("Float64").to_numpy(dtype=float, na_value=np.nan)


def quantile_thresholds(signals: pd.DataFrame, *, labels: pd.Series | np.ndarray,
                        languages: pd.Series | np.ndarray,
                        config: QRConfig) -> dict[str, QRThresholds]:
    """Per-language HI_COS/HI_JAC/LO_COS/LO_JAC (section 7); fixed ones where config names them."""
    cosine = signals["cosine"].to_numpy(dtype=float)
    jaccard = signals["jaccard"].to_numpy(dtype=float)
    label = _label_array(labels)
    language = np.asarray(languages).astype(str)
    fixed = config.thresholds if isinstance(config.thresholds, dict) else {}
    result: dict[str, QRThresholds] = {}
    for lang in sorted({str(value) for value in language}):
        if lang in fixed:
            result[lang] = fixed[lang]
            continue
        negative = (language == lang) & (label == 0)
        positive = (language == lang) & (label == 1)
        hi_cos, hi_jac = FALLBACK_HI
        if negative.sum() >= config.min_class_rows:
            hi_cos = float(np.quantile(cosine[negative], config.quantile_hi))
            hi_jac = float(np.quantile(jaccard[negative], config.quantile_hi))
        lo_cos, lo_jac = FALLBACK_LO
        if positive.sum() >= config.min_class_rows:
            lo_cos = float(np.quantile(cosine[positive], config.quantile_lo))
            lo_jac = float(np.quantile(jaccard[positive], config.quantile_lo))
        result[lang] = QRThresholds(
            hi_cos=max(hi_cos, FLOOR_HI[0]), hi_jac=max(hi_jac, FLOOR_HI[1]),
            lo_cos=min(lo_cos, CAP_LO[0]), lo_jac=min(lo_jac, CAP_LO[1]))
    return result


def out_of_fold_p_yes(rows: pd.DataFrame, *, fit_predict: FitPredict, folds: int, seed: int,
                      in_sample: bool = False) -> np.ndarray:
    """p(yes) for every row from a model that never saw it (k-fold cross-fitting).

    Folds are grouped by normalised query (the same query is never on both sides) and stratified
    by language and label. `in_sample=True` is the reference: fit and predict all rows at once.
    """
    rows = rows.reset_index(drop=True)
    if in_sample:
        return _checked(fit_predict(rows, rows), len(rows))
    groups = normalize_text(rows["origin_query"]).to_numpy()
    if len(set(groups)) < folds:
        raise DataError(f"QR out-of-fold prediction needs at least {folds} distinct queries, "
                        f"got {len(set(groups))}")
    strata = rows["language"].astype(str) + "|" + rows["label"].astype(str)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    p_yes = np.full(len(rows), np.nan)
    with warnings.catch_warnings():  # "least populated class has only k members" on small data
        warnings.simplefilter("ignore", UserWarning)
        splits = list(splitter.split(rows, strata.to_numpy(), groups))
    for train_index, predict_index in splits:
        predicted = fit_predict(rows.iloc[train_index].reset_index(drop=True),
                                rows.iloc[predict_index].reset_index(drop=True))
        p_yes[predict_index] = _checked(predicted, len(predict_index))
    return p_yes


def model_p_yes(rows: pd.DataFrame, *, fit_predict: FitPredict, config: QRConfig,
                seed: int) -> np.ndarray | None:
    """The checker's p(yes) as `config` asks (None when use_model is off)."""
    if not config.use_model:
        return None
    return out_of_fold_p_yes(rows, fit_predict=fit_predict, folds=config.folds, seed=seed,
                             in_sample=config.in_sample)


def _checked(p_yes: np.ndarray | pd.Series, n: int) -> np.ndarray:
    values = np.asarray(p_yes, dtype=float).reshape(-1)
    if len(values) != n:
        raise ValueError(f"expected {n} p(yes) values, got {len(values)}")
    if not np.all((values >= 0) & (values <= 1)):
        raise ValueError("p(yes) values must lie in [0, 1]")
    return values


def flag_rows(rows: pd.DataFrame, *, task: str, signals: pd.DataFrame,
              thresholds: dict[str, QRThresholds], p_yes: np.ndarray | None = None,
              prediction: np.ndarray | None = None, config: QRConfig) -> pd.DataFrame:
    """Audit table: signals, thresholds, model outputs, `flagged` and `reason` for every row."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}")
    n = len(rows)
    language = rows["language"].astype(str).to_numpy()
    missing = sorted(set(language) - set(thresholds))
    if missing:
        raise ValueError(f"no QR thresholds for language(s) {missing}")
    limits = {name: np.array([getattr(thresholds[lang], name) for lang in language], dtype=float)
              for name in ("hi_cos", "hi_jac", "lo_cos", "lo_jac")}
    cosine = signals["cosine"].to_numpy(dtype=float)
    jaccard = signals["jaccard"].to_numpy(dtype=float)
    label = _label_array(rows["label"])
    is0, is1 = label == 0, label == 1

    high_cos = is0 & (cosine >= limits["hi_cos"])
    high_jac = is0 & (jaccard >= limits["hi_jac"])
    low_sim = is1 & (cosine < limits["lo_cos"]) & (jaccard < limits["lo_jac"])
    p = None if p_yes is None else _checked(p_yes, n)
    if prediction is not None:
        predicted = _label_array(np.asarray(prediction))
        if len(predicted) != n:
            raise ValueError(f"expected {n} predictions, got {len(predicted)}")
    elif p is not None:
        predicted = (p >= 0.5).astype(float)
    else:
        predicted = np.full(n, np.nan)
    disagrees = (is0 | is1) & ~np.isnan(predicted) & (predicted != label)
    confident_yes = is0 & (p >= config.p_yes_hi) if p is not None else np.zeros(n, bool)
    confident_no = is1 & (p <= config.p_yes_lo) if p is not None else np.zeros(n, bool)
    model_given = p is not None or prediction is not None

    lexical = high_cos | high_jac | low_sim
    if config.mode == "reference":
        flagged = lexical | disagrees | confident_yes | confident_no
    elif model_given:
        flagged = confident_yes | confident_no | (disagrees & lexical)
    else:
        flagged = (high_cos & high_jac) | low_sim

    reason = pd.Series("", index=range(n), dtype=object)
    for name, fired in (("label0_high_cosine", high_cos), ("label0_high_jaccard", high_jac),
                        ("label1_low_similarity", low_sim), ("model_disagrees", disagrees),
                        (f"p_yes>={config.p_yes_hi:g}_on_label0", confident_yes),
                        (f"p_yes<={config.p_yes_lo:g}_on_label1", confident_no)):
        mark = fired & flagged
        reason[mark] = reason[mark] + "+" + name
    return pd.DataFrame({
        "id": rows["id"].astype(str).to_numpy(),
        "language": language,
        "label": rows["label"].astype("Int8").array,
        "cosine": cosine,
        "jaccard": jaccard,
        "p_yes": p if p is not None else np.full(n, np.nan),
        "prediction": pd.array(np.where(np.isnan(predicted), None, predicted), dtype="Int8"),
        **limits,
        "flagged": flagged,
        "reason": reason.str.removeprefix("+").astype(str).to_numpy(),
    })


def refine(rows: pd.DataFrame, *, task: str, config: QRConfig, p_yes: np.ndarray | None = None,
           prediction: np.ndarray | None = None) -> QRResult:
    """Flag and drop suspect TRAINING rows.

    Model signals are used when `p_yes` or `prediction` is given (`model_p_yes` computes p_yes as
    the config asks; `config.use_model` tells the caller whether to).
    """
    signals = lexical_signals(rows["origin_query"], rows[target_column(task)])
    thresholds = quantile_thresholds(signals, labels=rows["label"], languages=rows["language"],
                                     config=config)
    audit = flag_rows(rows, task=task, signals=signals, thresholds=thresholds, p_yes=p_yes,
                      prediction=prediction, config=config)
    kept = rows.loc[~audit["flagged"].to_numpy()].reset_index(drop=True)
    return QRResult(kept=kept, audit=audit, thresholds=thresholds)


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def score_audit(audit: pd.DataFrame, *, truth: pd.DataFrame, by_label: bool = False) -> pd.DataFrame:
    """Flagging quality against noise ground truth, per language and "all" (with `by_label`,
    per language and label). `correct_removed` counts rows whose label was right but that QR
    removed anyway: over-pruning."""
    noisy_by_id = pd.Series(truth["noisy"].astype(bool).to_numpy(),
                            index=truth["id"].astype(str).to_numpy())
    ids = audit["id"].astype(str)
    unknown = ids[~ids.isin(noisy_by_id.index)]
    if len(unknown):
        raise DataError(f"{len(unknown)} audited id(s) have no ground truth, e.g. "
                        f"{unknown.iloc[0]!r}", field="id")
    frame = pd.DataFrame({"language": audit["language"].astype(str).to_numpy(),
                          "flagged": audit["flagged"].astype(bool).to_numpy(),
                          "noisy": noisy_by_id.loc[ids].to_numpy()})
    if by_label:
        keys = ["language", "label"]
        frame["label"] = audit["label"].astype(str).to_numpy()
        groups = [*frame.groupby(keys, sort=True),
                  *((("all", label), part) for label, part in frame.groupby("label", sort=True))]
    else:
        keys = ["language"]
        groups = [*(((language,), part) for language, part in frame.groupby("language", sort=True)),
                  (("all",), frame)]
    records = []
    for name, part in groups:
        flagged, noisy = int(part["flagged"].sum()), int(part["noisy"].sum())
        hits = int((part["flagged"] & part["noisy"]).sum())
        precision, recall = _ratio(hits, flagged), _ratio(hits, noisy)
        records.append({**dict(zip(keys, name, strict=True)), "rows": len(part),
                        "flagged": flagged, "noisy": noisy, "true_positives": hits,
                        "correct_removed": flagged - hits,
                        "precision": precision, "recall": recall,
                        "f1": _ratio(2 * precision * recall, precision + recall)})
    return pd.DataFrame(records)


def _parse_prediction_line(obj: object, *, path: Path, line: int) -> dict[str, object]:
    if not isinstance(obj, dict):
        raise DataError("expected a JSON object", path=path, line=line)
    if "id" not in obj or obj["id"] is None or isinstance(obj["id"], bool | dict | list):
        raise DataError("missing or invalid id", path=path, line=line, field="id")
    record: dict[str, object] = {"id": str(obj["id"])}
    if "p_yes" in obj:
        value = obj["p_yes"]
        if (isinstance(value, bool) or not isinstance(value, int | float)
                or not 0 <= value <= 1):
            raise DataError(f"expected a number in [0, 1], got {value!r}", path=path, line=line,
                            field="p_yes")
        record["p_yes"] = float(value)
    if "prediction" in obj:
        value = obj["prediction"]
        if value not in (0, 1, "0", "1") or isinstance(value, bool):
            raise DataError(f"expected 0 or 1, got {value!r}", path=path, line=line,
                            field="prediction")
        record["prediction"] = int(value)
    if len(record) == 1:
        raise DataError("needs p_yes and/or prediction", path=path, line=line)
    return record


def read_predictions(path: Path | str) -> pd.DataFrame:
    """Read a `--pred FILE`: JSON Lines with `id` and `p_yes` and/or `prediction` (0/1).

    Returns columns id (str) and p_yes (float) and/or prediction (Int8); `attrs["path"]` is set.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("no such predictions file", path=path)
    records: list[dict[str, object]] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as error:
                raise DataError(f"invalid JSON: {error.msg}", path=path, line=number) from None
            record = _parse_prediction_line(obj, path=path, line=number)
            if records and record.keys() != records[0].keys():
                raise DataError(f"has fields {sorted(record)} but line {seen[records[0]['id']]} "
                                f"has {sorted(records[0])}", path=path, line=number)
            if record["id"] in seen:
                raise DataError(f"duplicate id {record['id']!r} (first on line "
                                f"{seen[record['id']]})", path=path, line=number, field="id")
            seen[str(record["id"])] = number
            records.append(record)
    if not records:
        raise DataError("no predictions in file", path=path)
    frame = pd.DataFrame.from_records(records)
    frame["id"] = frame["id"].astype(str)
    if "prediction" in frame:
        frame["prediction"] = frame["prediction"].astype("Int8")
    frame.attrs["path"] = str(path)
    return frame


def align_predictions(rows: pd.DataFrame,
                      preds: pd.DataFrame) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(p_yes, prediction) in the order of `rows`, matched by id; None where the file has none."""
    indexed = preds.set_index(preds["id"].astype(str))
    ids = rows["id"].astype(str)
    missing = ids[~ids.isin(indexed.index)]
    if len(missing):
        raise DataError(f"{len(missing)} training id(s) have no prediction, e.g. "
                        f"{missing.iloc[0]!r}", path=preds.attrs.get("path"), field="id")
    p_yes = indexed["p_yes"].loc[ids].to_numpy(dtype=float) if "p_yes" in indexed else None
    prediction = (indexed["prediction"].loc[ids].to_numpy(dtype=int)
                  if "prediction" in indexed else None)
    return p_yes, prediction


# ---------------------------------------------------------------------------- component

# Search ranges of the per-language thresholds: wide enough to include the reference's quantile
# defaults and clamps.
THRESHOLD_RANGES = {"hi_cos": (0.1, 0.9), "hi_jac": (0.05, 0.8),
                    "lo_cos": (0.0, 0.5), "lo_jac": (0.0, 0.4)}
CHECKER_VERSION = "1"


class QualityRefinement(Component):
    name = "QR"
    description = "Quality Refinement: drop training rows whose label looks wrong"
    stage = "rows"
    order = 10
    version = "1"
    settings = QRConfig

    def key_settings(self, settings: QRConfig, context: Context) -> dict[str, Any]:
        return {**settings.model_dump(mode="json"), "fold_seed": _fold_seed(context)}

    def apply(self, train: pd.DataFrame, settings: QRConfig, context: Context) -> RowsResult:
        p_yes = None
        fold_seed = _fold_seed(context)
        if settings.use_model:
            if context.checker is None:
                raise ValueError("QR.use_model needs a checker")
            fingerprint = frame_fingerprint(
                train, ["id", "language", "origin_query", target_column(context.task), "label"])
            p_yes = context.cache.get_or_compute(
                "QR-checker", version=CHECKER_VERSION,
                params={"folds": settings.folds, "in_sample": settings.in_sample,
                        "seed": context.seed, "fold_seed": fold_seed,
                        "checker": context.trial.checker_identity(settings.checker_model)},
                inputs=[fingerprint],
                compute=lambda: out_of_fold_p_yes(train, fit_predict=context.checker,
                                                  folds=settings.folds, seed=fold_seed,
                                                  in_sample=settings.in_sample),
                kind="array")
        result = refine(train, task=context.task, config=settings, p_yes=p_yes)
        audit = result.audit
        metrics = {"qr/removed": float(audit["flagged"].sum()),
                   "qr/removed_fraction": float(audit["flagged"].mean()) if len(audit) else 0.0}
        artifacts: dict[str, Any] = {
            "qr/audit.csv": audit,
            "qr/thresholds.json": json.dumps({k: v.model_dump() for k, v in result.thresholds.items()},
                                             indent=2)}
        if context.truth is not None:
            scored = score_audit(audit, truth=context.truth)
            by_label = score_audit(audit, truth=context.truth, by_label=True)
            artifacts["qr/audit_scores.csv"] = scored
            artifacts["qr/audit_scores_by_label.csv"] = by_label
            for _, row in scored.iterrows():
                for name in ("precision", "recall", "f1"):
                    metrics[f"qr/{name}/{row['language']}"] = float(row[name])
                metrics[f"qr/correct_removed/{row['language']}"] = float(row["correct_removed"])
                metrics[f"qr/correct_removed_fraction/{row['language']}"] = (
                    float(row["correct_removed"]) / max(1, row["rows"] - row["noisy"]))
            for _, row in by_label.iterrows():
                for name in ("precision", "recall"):
                    metrics[f"qr/{name}/{row['language']}/label{row['label']}"] = float(row[name])
        return RowsResult(kept=result.kept, metrics=metrics, artifacts=artifacts)

    def model_fits(self, settings: QRConfig) -> int:
        if not settings.use_model:
            return 0
        return 1 if settings.in_sample else settings.folds

    def search_space(self, languages: list[str]) -> dict[str, tuple[float, float]]:
        """Per-language thresholds as schema paths -> (low, high), for an Optuna search."""
        return {f"components.QR.thresholds.{language}.{name}": bounds
                for language in languages for name, bounds in THRESHOLD_RANGES.items()}

    def report_sections(self, records: list, plan: Any) -> list[tuple[str, str]]:
        from harness.report import make_table

        sections = []
        for task in plan.tasks:
            runs = [r for r in records if r.task == task and self.name in r.components
                    and any(k.startswith("qr/precision/") for k in r.metrics)]
            if not runs:
                continue
            # qr/precision/<language> (qr/precision/<language>/label<k> are the per-label rows)
            languages = sorted({k.split("/")[2] for k in runs[0].metrics
                                if k.startswith("qr/precision/") and k.count("/") == 2},
                               key=lambda x: (x == "all", x))
            metrics = ("precision", "recall", "f1", "precision/{0}/label0", "recall/{0}/label0",
                       "precision/{0}/label1", "recall/{0}/label1", "correct_removed_fraction")

            rows = [[language, *(_mean_metric(runs, m, language) for m in metrics)]
                    for language in languages]
            removed = np.mean([r.metrics.get("qr/removed_fraction", np.nan) for r in runs])
            sections.append((f"QR audit ({task})",
                             f"QR removed {removed:.1%} of training rows on average. Flagging "
                             "scored against the injected-noise ground truth (mean over the "
                             f"{len(runs)} QR trials of this plan), per language and per label "
                             "(label 0: rows labelled irrelevant; label 1: relevant). The last "
                             "column is the share of correctly labelled rows QR removed anyway "
                             "(over-pruning):\n\n"
                             + make_table(["language", "precision", "recall", "F1",
                                           "precision (label 0)", "recall (label 0)",
                                           "precision (label 1)", "recall (label 1)",
                                           "correct rows removed"], rows)))
        return sections


def _mean_metric(runs: list, metric: str, language: str) -> str:
    """Mean over runs of `qr/<metric>/<language>` (or the metric with `{0}` = language)."""
    name = f"qr/{metric.format(language)}" if "{0}" in metric else f"qr/{metric}/{language}"
    values = [r.metrics[name] for r in runs if name in r.metrics]
    return f"{np.mean(values):.3f}" if values else "–"


def _fold_seed(context: Context) -> int:
    """The checker's fold split follows the trial seed only with `seeds.vary_split`."""
    return context.seed if context.config.seeds.vary_split else 0

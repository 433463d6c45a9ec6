"""What a model is measured against: the majority class of its rows, and its outcome."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .settings import DIVERGED, OUTCOMES, SPLIT_COLUMNS, UNKNOWN, ReportError


def _positive_count(
    n: np.ndarray, accuracy: np.ndarray, precision: np.ndarray, recall: np.ndarray
) -> float:
    """Infer the number of positive rows P from each model's metrics on the same N rows.

    With TP > 0 and an error: FP + FN = N (1 - accuracy), FP = TP/precision - TP and
    FN = TP/recall - TP give TP, then P = TP / recall. With TP = 0 (precision = recall = 0):
    P = N (1 - accuracy) - FP <= N (1 - accuracy), exact for a model predicting only negatives.
    """
    valid = np.isfinite(accuracy) & np.isfinite(precision) & np.isfinite(recall) & (n > 0)
    exact = valid & (precision > 0) & (recall > 0) & (accuracy < 1)
    if exact.any():
        e = exact
        true_pos = n[e] * (1 - accuracy[e]) / (1 / precision[e] + 1 / recall[e] - 2)
        return float(np.median(np.round(true_pos / recall[e])))
    none_predicted = valid & (precision == 0) & (recall == 0)
    if none_predicted.any():
        return float(np.min(np.round(n[none_predicted] * (1 - accuracy[none_predicted]))))
    return math.nan


def majority_accuracy(frame: pd.DataFrame, part: str = "train") -> pd.Series:
    """Return, per row, the majority-class accuracy `max(p, 1 - p)` of its `part` rows.

    The positive share is `n_<part>_positive / n_<part>` where the results have that column;
    otherwise (older files) it is inferred exactly from the accuracy, precision and recall of
    the models evaluated on the same rows (same data, class, test size and split seed). NaN
    when no model's metrics determine it (all perfect) or when the part has no rows (`test`
    with test_size 0).
    """
    if part not in ("train", "test"):
        raise ReportError(f"part: {part!r} is not allowed; valid are 'train', 'test'")
    out = np.full(len(frame), math.nan)
    if frame.empty:
        return pd.Series(out, index=frame.index, dtype=np.float64)
    n_all = frame[f"n_{part}"].to_numpy(np.float64)
    metrics = [
        frame[f"{part}_{m}"].to_numpy(np.float64) for m in ("accuracy", "precision", "recall")
    ]
    known = f"n_{part}_positive"
    given_all = frame[known].to_numpy(np.float64) if known in frame.columns else None
    split = frame.groupby(list(SPLIT_COLUMNS), sort=False, dropna=False, observed=True)
    for positions in split.indices.values():
        n = n_all[positions]
        positives = math.nan
        if given_all is not None:
            given = given_all[positions]
            given = given[np.isfinite(given)]
            if given.size:  # one split has one set of rows: any row's count is every row's
                positives = float(given[0])
        if not math.isfinite(positives):
            positives = _positive_count(n, *(m[positions] for m in metrics))
        with np.errstate(divide="ignore", invalid="ignore"):
            share = positives / n
        out[positions] = np.maximum(share, 1 - share)
    return pd.Series(out, index=frame.index, dtype=np.float64)


def outcomes(models: pd.DataFrame) -> np.ndarray:
    """Return each model's outcome: the `outcome` column, or what older rows still tell.

    Rows written before the column (schema 1 and 2) are `diverged` when their `diverged` flag
    is set or their final loss is not finite or above the first epoch's (`_first`), as the
    rule says, and otherwise `unknown`: stalled needs the baseline loss they do not store.
    """
    stored = models["outcome"].astype(object).to_numpy()
    known = np.isin(stored, OUTCOMES)
    final = models["final_train_loss"].to_numpy(np.float64)
    first = models["_first"].to_numpy(np.float64)
    with np.errstate(invalid="ignore"):
        blown = models["diverged"].to_numpy(bool) | ~np.isfinite(final) | (final > first)
    derived = np.where(blown, DIVERGED, UNKNOWN)
    out = np.where(known, stored, derived).astype(object)
    return out

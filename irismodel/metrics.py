"""Classification metrics for many models at once, equal to scikit-learn's for each model."""

import ctypes

import numpy as np
from scipy.stats import rankdata

from irismodel import native

METRIC_NAMES = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
_POINTER, _INT = ctypes.c_void_p, ctypes.c_int64
_ARGUMENTS = (_POINTER, _INT, _INT, _POINTER, _POINTER)  # probabilities, K, N, targets, counts


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    # scikit-learn's zero_division=0: an undefined ratio counts as 0
    out = np.zeros_like(numerator, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def binary_metrics(
    probabilities: np.ndarray, targets: np.ndarray, diverged: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Return each metric of `METRIC_NAMES` per model: (K,) float64 arrays.

    `probabilities` (K, N) are P(positive), `targets` (N,) in {0, 1}, predictions `p > 0.5`. A
    non-finite or `diverged` (K,) model gets NaN ROC AUC and log loss; no rows: all NaN.
    """
    probabilities = np.ascontiguousarray(probabilities, dtype=np.float64)
    targets = np.asarray(targets).astype(bool)
    k, n = probabilities.shape
    if n == 0:
        return {name: np.full(k, np.nan) for name in METRIC_NAMES}
    true_pos, false_pos, twice_u, finite = _rank_counts(probabilities, targets).T  # (K,) each
    positives, negatives = int(targets.sum()), int((~targets).sum())
    false_neg = positives - true_pos
    accuracy = (true_pos + negatives - false_pos) / n
    precision = _safe_divide(true_pos, true_pos + false_pos)
    recall = _safe_divide(true_pos, true_pos + false_neg)
    f1 = _safe_divide(2 * true_pos, 2 * true_pos + false_pos + false_neg)

    scored = finite == 1  # (K,): the models whose probabilities count
    if diverged is not None:
        scored &= ~np.asarray(diverged, dtype=bool)
    roc_auc = np.full(k, np.nan)
    if positives and negatives:  # AUC = P(score of a positive > score of a negative)
        roc_auc[scored] = twice_u[scored] / 2 / (positives * negatives)
    eps = np.finfo(np.float64).eps  # scikit-learn clips probabilities the same way
    clipped = np.clip(probabilities, eps, 1 - eps)
    log_loss = -np.where(targets, np.log(clipped), np.log1p(-clipped)).mean(1)
    log_loss[~scored] = np.nan
    metrics = (accuracy, precision, recall, f1, roc_auc, log_loss)
    return dict(zip(METRIC_NAMES, metrics, strict=True))


def _rank_counts(probabilities: np.ndarray, targets: np.ndarray) -> np.ndarray:
    # per model (K, 4): true and false positives of p > 0.5, twice the Mann-Whitney U (pairs of
    # a positive and a negative, the positive higher; ties 1/2), 1 if all finite (else no U)
    k, n = probabilities.shape
    counts = np.zeros((k, 4), np.int64)
    function = native.c_function("irismodel_rank_counts", _ARGUMENTS, None)
    if function is not None:
        labels = np.ascontiguousarray(targets, np.uint8)
        function(probabilities.ctypes.data, k, n, labels.ctypes.data, counts.ctypes.data)
        return counts
    predicted = probabilities > 0.5  # (K, N); NaN compares False
    counts[:, 0], counts[:, 1] = (predicted & targets).sum(1), (predicted & ~targets).sum(1)
    counts[:, 3] = finite = np.isfinite(probabilities).all(1)
    ranks = rankdata(probabilities[finite], axis=1)  # average ranks: the U of a positive's rank
    counts[finite, 2] = 2 * ranks[:, targets].sum(1) - targets.sum() * (targets.sum() + 1)
    return counts

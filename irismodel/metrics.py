"""Classification metrics for many models at once, equal to scikit-learn's for each model."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

METRIC_NAMES = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")


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
    probabilities = np.asarray(probabilities, dtype=np.float64)
    targets = np.asarray(targets).astype(bool)
    k, n = probabilities.shape
    if n == 0:
        return {name: np.full(k, np.nan) for name in METRIC_NAMES}
    predicted = probabilities > 0.5  # (K, N); NaN compares False
    true_pos = (predicted & targets).sum(1)
    false_pos = (predicted & ~targets).sum(1)
    false_neg = (~predicted & targets).sum(1)
    accuracy = (predicted == targets).mean(1)
    precision = _safe_divide(true_pos, true_pos + false_pos)
    recall = _safe_divide(true_pos, true_pos + false_neg)
    f1 = _safe_divide(2 * true_pos, 2 * true_pos + false_pos + false_neg)

    finite = np.isfinite(probabilities).all(1)  # (K,): the models whose probabilities count
    if diverged is not None:
        finite &= ~np.asarray(diverged, dtype=bool)
    positives, negatives = targets.sum(), (~targets).sum()
    roc_auc = np.full(k, np.nan)
    log_loss = np.full(k, np.nan)
    if finite.any():
        scores = probabilities[finite]
        if positives and negatives:
            # Mann-Whitney U: AUC = P(score of a positive > score of a negative), ties count 1/2
            ranks = rankdata(scores, axis=1)
            roc_auc[finite] = (ranks[:, targets].sum(1) - positives * (positives + 1) / 2) / (
                positives * negatives
            )
        eps = np.finfo(np.float64).eps  # scikit-learn clips probabilities the same way
        clipped = np.clip(scores, eps, 1 - eps)
        log_loss[finite] = -np.where(targets, np.log(clipped), np.log1p(-clipped)).mean(1)
    return dict(
        zip(METRIC_NAMES, (accuracy, precision, recall, f1, roc_auc, log_loss), strict=True)
    )

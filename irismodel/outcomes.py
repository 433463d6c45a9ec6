"""Each model's outcome (converged, stalled, diverged) against the best linear classifier's loss."""

from __future__ import annotations

import functools
import warnings

import numpy as np

CONVERGED = "converged"
STALLED = "stalled"
DIVERGED = "diverged"
OUTCOMES = (CONVERGED, STALLED, DIVERGED)


def baseline_loss(x_train: np.ndarray, y_train: np.ndarray) -> float:
    """Return the training loss (mean binary cross-entropy) of an unpenalized logistic regression.

    The best any linear classifier does on these rows: a network with a hidden layer that ends
    no lower has learnt nothing a linear model could not. Deterministic (lbfgs from zeros), and
    fitted once per process for the same rows (every shard of a run asks).
    """
    x = np.ascontiguousarray(x_train, dtype=np.float64)
    y = np.ascontiguousarray(y_train, dtype=np.float64)
    return _fitted_loss(x.tobytes(), x.shape, y.tobytes())


@functools.lru_cache(maxsize=8)
def _fitted_loss(x_bytes: bytes, shape: tuple[int, ...], y_bytes: bytes) -> float:
    from sklearn.linear_model import LogisticRegression

    x = np.frombuffer(x_bytes, dtype=np.float64).reshape(shape)
    y = np.frombuffer(y_bytes, dtype=np.float64)
    if len(np.unique(y)) < 2:
        return 0.0  # one class: a constant predicts it perfectly
    with warnings.catch_warnings():
        # on separable rows lbfgs stops at max_iter with a loss near 0: that is the baseline
        warnings.simplefilter("ignore")
        model = LogisticRegression(penalty=None, max_iter=10_000, tol=1e-10).fit(x, y)
    p = np.clip(model.predict_proba(x)[:, 1], 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def classify(loss_curves: np.ndarray, non_finite: np.ndarray, baseline: float) -> np.ndarray:
    """Return (K,) outcome names of K models from their (K, E) loss curves.

    - diverged: a loss or weight is NaN or infinite (`non_finite`), or the final training loss
      is above the first epoch's (the loss of the initial weights): training made it worse;
    - stalled: not diverged, and the final training loss is not below `baseline`, the loss of
      the best linear classifier on the same rows (`baseline_loss`): a plateau;
    - converged: the final training loss is below the baseline.
    """
    curves = np.asarray(loss_curves)
    k = curves.shape[0]
    if k == 0:
        return np.empty(0, dtype=object)
    first = curves[:, 0].astype(np.float64)
    final = curves[:, -1].astype(np.float64)
    with np.errstate(invalid="ignore"):
        diverged = np.asarray(non_finite, dtype=bool) | ~np.isfinite(final) | (final > first)
        stalled = ~diverged & (final >= baseline)
    out = np.full(k, CONVERGED, dtype=object)
    out[stalled] = STALLED
    out[diverged] = DIVERGED
    return out

"""Each model's outcome, judged on how training ends: converged, stalled, oscillating, diverged."""

import functools
import warnings

import numpy as np

CONVERGED = "converged"
STALLED = "stalled"
OSCILLATING = "oscillating"
DIVERGED = "diverged"
OUTCOMES = (CONVERGED, STALLED, OSCILLATING, DIVERGED)
# The final window, the last tenth of the epochs: moving its end by 1% of the epochs changes
# under 1% of the labels of the default grid, against 20% for the loss of one epoch.
WINDOW_SHARE = 0.1
# Settled: no rise in the window above a running low by more than this share of its level, nor
# by more than SWING_FLOOR (a slow descent is settled; a spike or a swinging band is not).
SWING_SHARE = 0.25
SWING_FLOOR = 0.05


def baseline_loss(x_train: np.ndarray, y_train: np.ndarray) -> float:
    """Return the mean training BCE of an unpenalized logistic regression (cached per rows)."""
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


def window_size(epochs: int) -> int:
    """Return the number of final epochs an outcome is judged on: a tenth, at least one."""
    return max(1, int(np.ceil(WINDOW_SHARE * epochs)))


def classify(
    loss_curves: np.ndarray,
    non_finite: np.ndarray,
    baseline: float,
    train_accuracy: np.ndarray | None = None,
    majority_accuracy: float | None = None,
) -> np.ndarray:
    """Return (K,) outcome names of K models from their (K, E) loss curves.

    Judged on the last tenth of the epochs, by its level (median loss) and swing (largest rise
    above the running low): diverged if a loss or weight is not finite or every loss of the
    window exceeds the first epoch's; oscillating if the swing exceeds max(SWING_FLOOR,
    SWING_SHARE x level); stalled if the level is not below `baseline` or the accuracy not
    above `majority_accuracy`; else converged.
    """
    curves = np.asarray(loss_curves)
    if curves.shape[0] == 0:
        return np.empty(0, dtype=object)
    window = curves[:, -window_size(curves.shape[1]) :].astype(np.float64)  # (K, W)
    with np.errstate(invalid="ignore"):
        blown = np.asarray(non_finite, dtype=bool) | ~np.isfinite(curves).all(axis=1)
        safe = np.where(np.isfinite(window), window, 0.0)
        level = np.median(safe, axis=1)
        swing = (safe - np.minimum.accumulate(safe, axis=1)).max(axis=1)
        diverged = blown | (safe.min(axis=1) > curves[:, 0])
        unsettled = swing > np.maximum(SWING_FLOOR, SWING_SHARE * level)
        plateau = level >= baseline
        if train_accuracy is not None and majority_accuracy is not None:
            plateau |= np.asarray(train_accuracy, np.float64) <= majority_accuracy + 1e-12
    labels = np.select([diverged, unsettled, plateau], [DIVERGED, OSCILLATING, STALLED], CONVERGED)
    return labels.astype(object)

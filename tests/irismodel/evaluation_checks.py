"""The evaluation in plain numpy and scipy (einsum, rankdata): the bit-identity tests' oracle."""

import numpy as np
from scipy.stats import rankdata

from irismodel.metrics import METRIC_NAMES


def einsum_probabilities(parameters: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """P(positive) (K, N): the float64 forward pass by numpy's einsum."""
    w1 = parameters["fc1.weight"].astype(np.float64)  # (K, H, D)
    b1 = parameters["fc1.bias"].astype(np.float64)  # (K, H)
    w2 = parameters["fc2.weight"][:, 0, :].astype(np.float64)  # (K, H)
    b2 = parameters["fc2.bias"][:, 0].astype(np.float64)  # (K,)
    hidden = np.maximum(np.einsum("nd,khd->knh", np.asarray(x, np.float64), w1) + b1[:, None], 0)
    logits = np.einsum("knh,kh->kn", hidden, w2) + b2[:, None]  # (K, N)
    with np.errstate(over="ignore", invalid="ignore"):
        return 1.0 / (1.0 + np.exp(-logits))


def rank_metrics(
    probabilities: np.ndarray, targets: np.ndarray, diverged: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Each metric per model, counted from boolean predictions, ROC AUC from average ranks."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    targets = np.asarray(targets).astype(bool)
    k, n = probabilities.shape
    if n == 0:
        return {name: np.full(k, np.nan) for name in METRIC_NAMES}

    def ratio(numerator, denominator):
        out = np.zeros_like(numerator, dtype=np.float64)
        return np.divide(numerator, denominator, out=out, where=denominator > 0)

    predicted = probabilities > 0.5
    true_pos = (predicted & targets).sum(1)
    false_pos = (predicted & ~targets).sum(1)
    false_neg = (~predicted & targets).sum(1)
    accuracy = (predicted == targets).mean(1)
    precision = ratio(true_pos, true_pos + false_pos)
    recall = ratio(true_pos, true_pos + false_neg)
    f1 = ratio(2 * true_pos, 2 * true_pos + false_pos + false_neg)
    finite = np.isfinite(probabilities).all(1)
    if diverged is not None:
        finite &= ~np.asarray(diverged, dtype=bool)
    positives, negatives = targets.sum(), (~targets).sum()
    roc_auc, log_loss = np.full(k, np.nan), np.full(k, np.nan)
    if finite.any():
        scores = probabilities[finite]
        if positives and negatives:
            ranks = rankdata(scores, axis=1)
            u = ranks[:, targets].sum(1) - positives * (positives + 1) / 2
            roc_auc[finite] = u / (positives * negatives)
        eps = np.finfo(np.float64).eps
        clipped = np.clip(scores, eps, 1 - eps)
        log_loss[finite] = -np.where(targets, np.log(clipped), np.log1p(-clipped)).mean(1)
    values = (accuracy, precision, recall, f1, roc_auc, log_loss)
    return dict(zip(METRIC_NAMES, values, strict=True))


def assert_same_bits(actual: np.ndarray, expected: np.ndarray, what: str = "") -> None:
    """Same shape and dtype, NaN in the same places, every other value the same bits."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, what
    nan = np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(actual), nan, err_msg=what)
    different = actual[~nan].view(np.uint64) != expected[~nan].view(np.uint64)
    assert not different.any(), f"{what}: {different.sum()} values differ"


def random_networks(rng: np.random.Generator, k: int, h: int, d: int = 4) -> dict[str, np.ndarray]:
    """K networks of float32 weights of magnitudes 1e-4..1e4, a few NaN, infinite, 0 or huge."""
    shapes = {"fc1.weight": (k, h, d), "fc1.bias": (k, h), "fc2.weight": (k, 1, h)}
    shapes["fc2.bias"] = (k, 1)
    networks = {}
    for name, shape in shapes.items():
        values = rng.standard_normal(shape) * 10.0 ** rng.uniform(-4, 4, shape)
        odd = rng.random(shape) < 0.003
        values[odd] = rng.choice([np.nan, np.inf, -np.inf, 0.0, -0.0, 3e38], odd.sum())
        networks[name] = values.astype(np.float32)
    return networks

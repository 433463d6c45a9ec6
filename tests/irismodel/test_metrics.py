"""Batched metrics equal scikit-learn's, model by model, and survive diverged models."""

import numpy as np
import pytest
from evaluation_checks import assert_same_bits, rank_metrics
from sklearn import metrics as skm

from irismodel.metrics import METRIC_NAMES, binary_metrics


def _sklearn(probabilities: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    predicted = probabilities > 0.5
    return {
        "accuracy": skm.accuracy_score(targets, predicted),
        "precision": skm.precision_score(targets, predicted, zero_division=0),
        "recall": skm.recall_score(targets, predicted, zero_division=0),
        "f1": skm.f1_score(targets, predicted, zero_division=0),
        "roc_auc": skm.roc_auc_score(targets, probabilities),
        "log_loss": skm.log_loss(targets, probabilities, labels=[0, 1]),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_sklearn_per_model(seed):
    """Every metric of every model equals scikit-learn's on the same predictions."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 2, 57)
    probabilities = rng.random((6, 57))
    probabilities[1] = np.round(probabilities[1], 1)  # ties, for ROC AUC's average ranks
    probabilities[2] = 0.2  # predicts no positive: precision and F1 undefined, counted 0
    probabilities[3, :3] = [0.0, 1.0, 1e-300]  # extremes that log loss must clip
    ours = binary_metrics(probabilities, targets)
    for k in range(len(probabilities)):
        expected = _sklearn(probabilities[k], targets)
        for name in METRIC_NAMES:
            np.testing.assert_allclose(ours[name][k], expected[name], rtol=1e-12, err_msg=name)


def test_diverged_model_keeps_prediction_metrics():
    """A model with NaN probabilities gets NaN ROC AUC and log loss, the rest from predictions."""
    targets = np.array([0, 1, 1, 0, 1])
    probabilities = np.array([[0.1, 0.9, 0.8, 0.3, 0.7], [np.nan] * 5])
    ours = binary_metrics(probabilities, targets)
    assert ours["accuracy"][0] == 1.0
    assert np.isnan(ours["roc_auc"][1]) and np.isnan(ours["log_loss"][1])
    assert ours["accuracy"][1] == pytest.approx(2 / 5)  # NaN predicts negative
    assert ours["recall"][1] == 0.0


def test_models_marked_diverged_get_no_probability_scores():
    """Finite probabilities of a model marked diverged are not scored; its predictions are."""
    targets = np.array([0, 1, 1, 0, 1])
    probabilities = np.array([[0.1, 0.9, 0.8, 0.3, 0.7]] * 2)
    ours = binary_metrics(probabilities, targets, diverged=np.array([False, True]))
    assert ours["roc_auc"][0] == 1.0 and np.isnan(ours["roc_auc"][1])
    assert np.isfinite(ours["log_loss"][0]) and np.isnan(ours["log_loss"][1])
    assert ours["accuracy"][1] == ours["accuracy"][0] == 1.0


def test_no_rows_gives_nan_everywhere():
    """With no evaluation rows (test_size=0 has no test split) every metric is NaN."""
    ours = binary_metrics(np.empty((3, 0)), np.empty(0))
    assert all(np.isnan(ours[name]).all() for name in METRIC_NAMES)


def test_metrics_equal_the_average_rank_formulation_bit_for_bit(evaluation):
    """Every metric equals its count of predictions and, for ROC AUC, scipy's average ranks, to
    the last bit: ties, 0 and 1, NaN, models marked diverged, one class only, 1 to 700 rows."""
    rng = np.random.default_rng(7)
    for trial in range(300):
        n = int(rng.choice([1, 2, 3, 38, 112, 700])) if trial % 4 else int(rng.integers(1, 200))
        targets = rng.random(n) < rng.uniform(0.05, 0.95)
        k = int(rng.integers(1, 40))
        probabilities = rng.random((k, n)) ** rng.uniform(0.1, 10, (k, 1))
        probabilities[::3] = np.round(probabilities[::3], int(rng.integers(0, 4)))  # ties
        extremes = rng.random((k, n)) < 0.1
        probabilities[extremes] = rng.choice([0.0, 1.0, 0.5, 1e-300, 1 - 1e-16], extremes.sum())
        probabilities[rng.random(k) < 0.1, int(rng.integers(n))] = np.nan
        diverged = rng.random(k) < 0.1 if trial % 2 else None
        got = binary_metrics(probabilities, targets, diverged)
        want = rank_metrics(probabilities, targets, diverged)
        for name in METRIC_NAMES:
            assert_same_bits(got[name], want[name], f"trial {trial}: {name}")

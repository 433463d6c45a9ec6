"""Batched metrics equal scikit-learn's, model by model, and survive diverged models."""

from __future__ import annotations

import numpy as np
import pytest
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

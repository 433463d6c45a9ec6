"""Each model's outcome: plateaus and blow-ups are caught, against the linear baseline's loss."""

from __future__ import annotations

import numpy as np
import pytest

import irismodel.sweep as sweep
from irismodel import results
from irismodel.config import check_data, validate_config
from irismodel.outcomes import CONVERGED, DIVERGED, STALLED, baseline_loss, classify


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return check_data(validate_config(output_dir=str(tmp_path_factory.mktemp("out"))))


def _sweep(folder, **overrides):
    params = dict(hidden_dims="8..14", optimizers=["sgd"], seeds="0..9", output_dir=str(folder))
    config = validate_config(**{**params, "device": "cpu", **overrides})
    return results.read_results(sweep.run_sweep(config, "run"))


def test_baseline_is_the_best_linear_fit_below_the_constant_predictor(split):
    baseline = baseline_loss(split.x_train, split.y_train)
    prior = split.y_train.mean()
    constant = -(prior * np.log(prior) + (1 - prior) * np.log(1 - prior))
    assert 0 < baseline < constant  # a linear model beats always predicting the prior
    # the logistic regression's optimum: no other weights of a linear model do better
    rng = np.random.default_rng(0)
    x = np.c_[split.x_train, np.ones(len(split.x_train))].astype(np.float64)
    for _ in range(200):
        logits = x @ rng.normal(size=5)
        p = np.clip(1 / (1 + np.exp(-logits)), 1e-15, 1 - 1e-15)
        y = split.y_train
        assert -np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)) >= baseline - 1e-9


def test_plateaus_are_stalled_and_the_rest_converged(tmp_path):
    """The notebook's sweep: some sgd models end on a plateau no better than a linear model."""
    frame = _sweep(tmp_path)
    stalled = frame[frame["outcome"] == STALLED]
    converged = frame[frame["outcome"] == CONVERGED]
    assert len(stalled) > 0 and len(converged) > 0 and len(stalled) + len(converged) == 70
    baseline = frame["baseline_loss"].iloc[0]
    assert frame["baseline_loss"].eq(baseline).all()
    assert (stalled["final_train_loss"] >= baseline).all()
    assert (converged["final_train_loss"] < baseline).all()
    # the plateau is real: those models classify worse than the converged ones
    assert stalled["train_accuracy"].max() < converged["train_accuracy"].min()
    assert not frame["diverged"].any()  # none overflowed: the old flag saw no failure at all


def test_a_loss_that_blows_up_without_overflowing_is_diverged(tmp_path):
    frame = _sweep(tmp_path, learning_rate=100.0, seeds="0..4", epochs=200)
    assert frame["outcome"].eq(DIVERGED).all()
    finite = frame[~frame["diverged"]]
    assert len(finite) > 0  # some stay finite, and are diverged all the same
    first = np.array([curve[0] for curve in finite["loss_curve"]])
    assert (finite["final_train_loss"].to_numpy() > first).all()


def test_classify_rules():
    curves = np.array(
        [
            [0.7, 0.3, 0.1],  # converged
            [0.7, 0.6, 0.5],  # stalled at the baseline
            [0.7, 2.0, 0.9],  # worse than the start
            [0.7, np.nan, np.nan],  # overflowed
            [0.7, 0.3, 0.1],  # a weight overflowed
        ],
        dtype=np.float32,
    )
    non_finite = np.array([False, False, False, True, True])
    outcomes = classify(curves, non_finite, baseline=0.48)
    assert list(outcomes) == [CONVERGED, STALLED, DIVERGED, DIVERGED, DIVERGED]
    assert classify(np.empty((0, 5)), np.empty(0, bool), 0.5).shape == (0,)

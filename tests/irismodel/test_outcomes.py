"""Each model's outcome: plateaus, swings and blow-ups, judged on the final tenth of training."""

import numpy as np
import pytest

import irismodel.sweep as sweep
from irismodel import store
from irismodel.engine import train_batched
from irismodel.outcomes import (
    CONVERGED,
    DIVERGED,
    OSCILLATING,
    STALLED,
    baseline_loss,
    classify,
    window_size,
)
from irismodel.parameters import SweepConfig
from irismodel.preflight import check_data


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return check_data(SweepConfig(output_dir=str(tmp_path_factory.mktemp("out"))))


def _sweep(folder, **overrides):
    params = dict(
        hidden_dims="8..14",
        optimizers=["sgd"],
        split_seeds="0",
        seeds="0..9",
        output_dir=str(folder),
    )
    config = SweepConfig(**{**params, "device": "cpu", **overrides})
    return store.read_results(sweep.run_sweep(config, "run"))


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
    assert len(stalled) > 0 and len(converged) > 0
    assert frame["outcome"].isin([CONVERGED, STALLED, OSCILLATING]).all()
    baseline = frame["baseline_loss"].iloc[0]
    assert frame["baseline_loss"].eq(baseline).all()
    level = np.array([np.median(c[-100:]) for c in frame["loss_curve"]])
    assert (level[frame["outcome"].eq(STALLED).to_numpy()] >= baseline).all()
    assert (level[frame["outcome"].eq(CONVERGED).to_numpy()] < baseline).all()
    # the plateau is real: those models classify worse than the converged ones
    assert stalled["train_accuracy"].max() < converged["train_accuracy"].min()
    assert not frame["diverged"].any()  # none overflowed: the old flag saw no failure at all


def test_a_loss_that_blows_up_without_overflowing_is_diverged(tmp_path):
    """Learning rate 100: the loss ends above its start through the whole final window."""
    frame = _sweep(tmp_path, learning_rate=100.0, split_seeds="0", seeds="0..4", epochs=200)
    assert frame["outcome"].eq(DIVERGED).all()
    finite = frame[~frame["diverged"]]
    assert len(finite) > 0  # some stay finite, and are diverged all the same
    first = np.array([curve[0] for curve in finite["loss_curve"]])
    assert (finite["final_train_loss"].to_numpy() > first).all()


@pytest.fixture(scope="module")
def notebook_curves(split):
    """Loss curves of the notebook's two loops, h 8..14 x 20 seeds, 1000 epochs, and baseline."""
    curves = {
        rule: np.concatenate(
            [
                train_batched(
                    split.x_train, split.y_train, h, rule, range(20), 0.1, 1000
                ).loss_curves
                for h in range(8, 15)
            ]
        )
        for rule in ("sgd", "manual-no-zero-grad")
    }
    return curves, baseline_loss(split.x_train, split.y_train)


def test_the_second_loop_oscillates_finite_and_is_not_diverged(notebook_curves):
    """The notebook's second loop fits, then swings in a bounded band: oscillating, not diverged."""
    curves, baseline = notebook_curves
    swinging = curves["manual-no-zero-grad"]
    labels = classify(swinging, np.zeros(len(swinging), bool), baseline)
    oscillating = swinging[labels == OSCILLATING]
    assert len(oscillating) >= 0.2 * len(swinging)  # a common fate of this rule, not a fluke
    assert np.isfinite(oscillating).all()
    assert (oscillating.min(axis=1) < oscillating[:, 0]).all()  # it fitted before it swung
    window = oscillating[:, -window_size(1000) :]
    assert ((window.max(axis=1) - window.min(axis=1)) > 0.05).all()
    # sgd's curves, all finite and settling, are never labelled oscillating in bulk
    sgd = classify(curves["sgd"], np.zeros(len(curves["sgd"]), bool), baseline)
    assert (sgd == OSCILLATING).mean() < 0.1 and not (sgd == DIVERGED).any()


@pytest.mark.parametrize("rule", ["sgd", "manual-no-zero-grad"])
def test_labels_barely_move_when_the_window_end_moves_by_one_percent(notebook_curves, rule):
    """Moving the end of the final window by 1% of the epochs changes at most 2% of the labels."""
    curves, baseline = notebook_curves
    finite = np.zeros(len(curves[rule]), bool)
    at_end = classify(curves[rule], finite, baseline)
    earlier = classify(curves[rule][:, :990], finite, baseline)
    assert (at_end != earlier).mean() <= 0.02
    assert len(set(at_end)) >= 2  # a sample with more than one outcome, so labels could move


def test_classify_rules():
    """Each outcome from the level and swing of the final tenth of a 20-epoch curve."""
    descent = np.linspace(0.7, 0.1, 20)
    curves = np.array(
        [
            descent,  # converged: a monotone descent below the baseline is settled
            np.linspace(0.7, 0.5, 20),  # stalled at the baseline
            np.r_[descent[:18], 0.9, 0.95],  # above the start through the whole window
            np.r_[descent[:18], np.nan, np.nan],  # overflowed
            descent,  # a weight overflowed
            np.r_[descent[:18], 0.1, 0.4],  # finite, swings up by 0.3 at the end: oscillating
            descent,  # below the baseline, but no better than the majority class
        ],
        dtype=np.float32,
    )
    non_finite = np.array([False, False, False, True, True, False, False])
    accuracy = np.array([0.9, 0.7, 0.5, 0.5, 0.5, 0.8, 0.66])
    outcomes = classify(curves, non_finite, 0.48, accuracy, majority_accuracy=0.667)
    assert list(outcomes) == [CONVERGED, STALLED, DIVERGED, DIVERGED, DIVERGED, OSCILLATING,
                              STALLED]  # fmt: skip
    # judged up to epoch 18, the swing at the end is not seen yet
    assert classify(curves[5:6, :18], non_finite[5:6], 0.48)[0] == CONVERGED
    assert classify(np.empty((0, 5)), np.empty(0, bool), 0.5).shape == (0,)

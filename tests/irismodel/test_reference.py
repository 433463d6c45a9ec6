"""The reference check: the notebook's own loop retrained beside the batched rows, in every run."""

import numpy as np
import pytest

import irismodel.sweep as sweep
from irismodel import store
from irismodel.parameters import SweepConfig
from irismodel.ranges import IntRanges
from irismodel.reference import TOLERANCE, checked_seeds


def _run(folder, **overrides):
    params = dict(
        hidden_dims="8, 12",
        optimizers=["sgd", "manual", "manual-no-zero-grad"],
        split_seeds="0",
        seeds="3..8",
        epochs=150,
        output_dir=str(folder),
        device="cpu",
        shard_size=4,
        reference_seeds=1,
    )
    config = SweepConfig(**{**params, **overrides})
    return store.read_results(sweep.run_sweep(config, "run"))


def test_checked_seeds_are_spread_over_the_run_in_every_configuration(tmp_path):
    """Seeds beyond the first are retrained: the first and the last of the run."""
    frame = _run(tmp_path, reference_seeds=2, reference_epochs=100)
    checked = frame[frame["reference_checked"]]
    assert sorted(set(checked["seed"])) == [3, 8]  # the run's first and last seeds
    assert len(checked) == 2 * 2 * 3  # in every (hidden_dim, optimizer)
    assert checked["reference_epochs"].eq(100).all()
    assert all(len(curve) == 100 for curve in checked["reference_loss_curve"])
    unchecked = frame[~frame["reference_checked"]]
    assert unchecked["reference_max_abs_diff"].isna().all()
    assert unchecked["reference_loss_curve"].isna().all()
    # sgd and the hand-written step with zero_grad reproduce the notebook's loop closely
    exact = checked[checked["optimizer"] != "manual-no-zero-grad"]
    assert (exact["reference_max_abs_diff"] <= TOLERANCE).all()
    assert exact["reference_agrees"].all()


def test_the_notebook_s_literal_line_differs_from_sgd_by_rounding_only(tmp_path):
    """The reference loop runs `param -= lr * param.grad`: SGD up to float32 rounding, not bit for
    bit; without zero_grad the curves part for real."""
    checked = _run(tmp_path)
    checked = checked[checked["reference_checked"]].set_index(["optimizer", "hidden_dim", "seed"])
    differences = []
    for hidden_dim in (8, 12):
        sgd = np.asarray(checked.loc[("sgd", hidden_dim, 3), "reference_loss_curve"])
        manual = np.asarray(checked.loc[("manual", hidden_dim, 3), "reference_loss_curve"])
        accumulated = checked.loc[("manual-no-zero-grad", hidden_dim, 3), "reference_loss_curve"]
        differences.append(np.abs(sgd - manual).max())
        assert np.abs(sgd - np.asarray(accumulated)).max() > 1e-3
    assert max(differences) > 0  # two roundings, not SGD's one: not bit-identical
    assert max(differences) < TOLERANCE  # but the same algorithm up to float32 rounding


def test_checks_spread_over_splits_and_seeds(tmp_path):
    """With several splits, the checked (split, seed) pairs cover the first and last of each."""
    frame = _run(tmp_path, split_seeds="0..2", reference_seeds=3, optimizers=["sgd"],
                 hidden_dims="8", epochs=20)  # fmt: skip
    checked = frame[frame["reference_checked"]]
    pairs = sorted(zip(checked["split_seed"], checked["seed"], strict=True))
    assert pairs == [(0, 3), (1, 5), (2, 8)]  # seeds at positions 0, 2 (of 2.5), 5


def test_a_perturbed_engine_is_flagged(tmp_path, monkeypatch):
    """An engine one part in a thousand off in its step size no longer matches the notebook."""
    train = sweep.train_batched

    def perturbed(x, y, hidden_dim, optimizer, seeds, learning_rate, *args, **kwargs):
        return train(x, y, hidden_dim, optimizer, seeds, learning_rate * 1.001, *args, **kwargs)

    monkeypatch.setattr(sweep, "train_batched", perturbed)
    frame = _run(tmp_path, optimizers=["sgd", "manual"])
    checked = frame[frame["reference_checked"]]
    assert len(checked) == 4
    assert (checked["reference_max_abs_diff"] > TOLERANCE).all()


def test_no_check_when_switched_off(tmp_path):
    frame = _run(tmp_path, reference_seeds=0)
    assert not frame["reference_checked"].any()
    assert frame["reference_loss_curve"].isna().all()


def test_reference_epochs_beyond_the_run_are_capped(tmp_path):
    frame = _run(tmp_path, epochs=30, reference_epochs=100, optimizers=["sgd"])
    assert frame.loc[frame["reference_checked"], "reference_epochs"].eq(30).all()


def test_checked_seeds_are_spread_from_first_to_last():
    """k checks take evenly spaced seeds, first and last included; one check takes the first."""
    one = IntRanges.of([0])
    assert checked_seeds(IntRanges.of([5, 9, 2]), 2, one, 0) == {2, 9}
    assert checked_seeds(IntRanges.of(range(10**7)), 1, one, 0) == {0}
    assert checked_seeds(IntRanges.of(range(10**7)), 3, one, 0) == {0, 5_000_000, 9_999_999}
    assert checked_seeds(IntRanges.of([1]), 0, one, 0) == set()


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"reference_seeds": -1}, r"reference_seeds: -1 is not allowed; .*0\.\.1,000"),
        ({"reference_epochs": 0}, r"reference_epochs: 0 is not allowed; .*1\.\.1,000,000"),
        ({"reference_seeds": True}, r"reference_seeds: True is not allowed"),
    ],
)
def test_bad_check_parameters_are_refused(tmp_path, parameters, message):
    with pytest.raises(ValueError, match=message):
        SweepConfig(output_dir=str(tmp_path / "out"), **parameters)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("noise", "agrees"), [(1e-7, True), (1e-3, False)])
def test_predictions_agree_up_to_rounding_of_the_batched_re_run(
    tmp_path, monkeypatch, noise, agrees
):
    """A GPU re-runs the checked seeds in a batch of another size, which may round otherwise:
    within the tolerance the rows still agree; beyond it the re-run stands for other rows."""
    import irismodel.reference as reference

    train = reference.train_batched

    def rounded_otherwise(*args, **kwargs):
        run = train(*args, **kwargs)
        run.loss_curves[:] += noise
        return run

    monkeypatch.setattr(reference, "train_batched", rounded_otherwise)
    frame = _run(tmp_path, optimizers=["sgd"], hidden_dims="8")
    checked = frame[frame["reference_checked"]]
    assert len(checked) == 1 and checked["reference_agrees"].eq(agrees).all()


def test_warm_up_builds_the_notebook_optimizer_in_a_thread_that_ends():
    """warm_up runs torch.optim's one-time set-up in a named, non-daemon thread that finishes."""
    import sys

    from irismodel.reference import warm_up

    thread = warm_up()
    assert thread.name == "reference-warm-up" and not thread.daemon
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert "torch._dynamo" in sys.modules  # what the first SGD(...) of a process imports

"""A configuration trains once, then comes from the cache; its rows carry everything they claim."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import numpy as np

import irismodel.sweep as sweep
from irismodel.config import validate_config
from irismodel.data import load_dataset, split_dataset
from irismodel.engine import predict_proba, train_reference
from irismodel.metrics import binary_metrics


def _config(tmp_path, **overrides):
    params = dict(
        hidden_dims=[8],
        optimizers=["sgd"],
        seeds=[0, 1, 2],
        epochs=40,
        output_dir=str(tmp_path),
        device="cpu",
    )
    return validate_config(**{**params, **overrides})


def test_second_training_comes_from_the_cache(tmp_path, monkeypatch):
    """The same configuration on the same data trains once; the second call loads it."""
    config = _config(tmp_path)
    split = split_dataset(load_dataset())
    first = sweep.train_configuration(split, 8, "sgd", config)
    calls = []
    monkeypatch.setattr(sweep, "train_batched", lambda *a, **k: calls.append(a))
    second = sweep.train_configuration(split, 8, "sgd", config)
    assert calls == [] and second.cached and not first.cached
    np.testing.assert_array_equal(second.run.loss_curves, first.run.loss_curves)
    assert second.worker == first.worker == f"{os.uname().nodename}:{os.getpid()}"


def test_cache_misses_when_training_inputs_change(tmp_path):
    """Another learning rate or split is another cache entry."""
    split = split_dataset(load_dataset())
    sweep.train_configuration(split, 8, "sgd", _config(tmp_path))
    other_lr = sweep.train_configuration(split, 8, "sgd", _config(tmp_path, learning_rate=0.05))
    other_split = split_dataset(load_dataset(), split_seed=1)
    other_data = sweep.train_configuration(other_split, 8, "sgd", _config(tmp_path))
    assert not other_lr.cached and not other_data.cached


def test_rows_match_an_independent_evaluation(tmp_path):
    """Each row's curve and metrics equal the reference engine's model evaluated independently."""
    config = _config(tmp_path, test_size=0.3, split_seed=4)
    split = split_dataset(load_dataset(), test_size=0.3, split_seed=4)
    trained = sweep.train_configuration(split, 8, "sgd", config, use_cache=False)
    context = sweep.RunContext("run", datetime.now(UTC), config)
    rows = sweep.evaluate_configuration(trained, split, context)
    reference = train_reference(split.x_train, split.y_train, 8, "sgd", [0, 1, 2], 0.1, 40)
    test_scores = binary_metrics(predict_proba(reference.parameters, split.x_test), split.y_test)
    for i, row in enumerate(rows):
        assert (row["hidden_dim"], row["optimizer"], row["seed"]) == (8, "sgd", i)
        np.testing.assert_allclose(row["loss_curve"], reference.loss_curves[i], rtol=1e-5)
        assert row["test_accuracy"] == test_scores["accuracy"][i]
        assert row["n_train"] + row["n_test"] == 150 and row["diverged"] is False
        assert row["final_train_loss"] == row["loss_curve"][-1]

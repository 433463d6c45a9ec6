"""Predictions of stacked models equal the notebook's network's, and numpy's einsum bit for bit."""

import platform

import numpy as np
import pytest
import torch
from evaluation_checks import assert_same_bits, einsum_probabilities, random_networks

from irismodel import native
from irismodel.data import load_dataset, split_dataset
from irismodel.engine import predict, predict_proba, train_batched
from irismodel.model import NeuralNet


def test_predict_proba_matches_the_network(iris):
    """predict_proba equals sigmoid(NeuralNet(x)) for every stacked model."""
    x, _ = iris
    run = train_batched(x, np.zeros(len(x), np.float32), 5, "sgd", [0, 1], 0.1, 3)
    probabilities = predict_proba(run.parameters, x)
    assert probabilities.shape == (2, len(x))
    for i in range(2):
        net = NeuralNet(4, 5, 1)
        net.load_state_dict({n: torch.from_numpy(p[i]) for n, p in run.parameters.items()})
        expected = torch.sigmoid(net(torch.from_numpy(x))).detach().numpy()[:, 0]
        np.testing.assert_allclose(probabilities[i], expected, rtol=1e-5, atol=1e-6)


def test_random_networks_get_einsums_bits(evaluation, iris):
    """For every hidden_dim 1..64 and some up to 4,096, random networks (weights from 1e-4 to 1e4,
    NaN, infinite, 0, huge) get einsum's probabilities to the last bit, on any number of rows."""
    rng = np.random.default_rng(0)
    x, _ = iris
    wide = (rng.standard_normal((9, 4)) * 10.0 ** rng.uniform(-3, 3, (9, 4))).astype(np.float32)
    for h in [*range(1, 65), 127, 128, 129, 333, 4096]:
        networks = random_networks(rng, 25 if h < 1000 else 2, h)
        for rows in (x, x[:1], x[:0], wide):
            got, want = predict_proba(networks, rows), einsum_probabilities(networks, rows)
            assert_same_bits(got, want, f"hidden_dim {h}, {len(rows)} rows")
    features = np.repeat(wide, 4, axis=1)[:, :13]
    one = random_networks(rng, 1, 9, d=13)  # one model, 13 features
    assert_same_bits(predict_proba(one, features), einsum_probabilities(one, features), "D=13")


@pytest.mark.parametrize("optimizer", ["sgd", "manual-no-zero-grad"])
def test_trained_networks_get_einsums_bits(evaluation, optimizer):
    """Trained networks of hidden_dim 1, 8, 14 and 64, diverged ones (learning rate 1e25)
    included, get einsum's probabilities to the last bit on their training and test rows."""
    split = split_dataset(load_dataset(), split_seed=1)
    for h, rate in ((1, 0.1), (8, 0.1), (14, 0.1), (64, 0.1), (11, 1e25)):
        run = train_batched(split.x_train, split.y_train, h, optimizer, range(40), rate, 30)
        for rows in (split.x_train, split.x_test):
            want = einsum_probabilities(run.parameters, rows)
            assert_same_bits(predict_proba(run.parameters, rows), want, f"hidden_dim {h}")
    assert np.isnan(want).any()  # the last run diverged


@pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"),
    reason="numpy's einsum kernel sums as the compiled module does on x86-64",
)
def test_the_compiled_forward_pass_is_used_on_x86_64(built):
    """On x86-64 the compiled forward pass is found to sum as einsum does, and is used."""
    assert native.c_function("irismodel_logits", predict._ARGUMENTS, None) is not None
    assert predict._sums_as_einsum()
    arrays = [np.ones((3, 4)), np.ones((2, 5, 4)), np.ones((2, 5)), np.ones((2, 5)), np.ones(2)]
    logits = predict._compiled_logits(*arrays)  # None where einsum would be used
    assert logits is not None and np.array_equal(logits, predict._einsum_logits(*arrays))

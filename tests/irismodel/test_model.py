"""Tests for the notebook's network and its seeded initial weights."""

import threading

import pytest
import torch

from irismodel.model import PARAMETER_NAMES, NeuralNet, initial_parameters, seeded_net


@pytest.mark.parametrize("hidden_dim", [1, 8, 14])
@pytest.mark.parametrize("seed", [0, 1, 42])
def test_initial_parameters_equal_manual_seed_construction(hidden_dim, seed):
    """initial_parameters(h, s) equals the weights of torch.manual_seed(s); NeuralNet(4, h, 1)."""
    torch.manual_seed(seed)
    expected = NeuralNet(4, hidden_dim, 1).state_dict()
    actual = initial_parameters(hidden_dim, seed)
    assert list(actual) == list(PARAMETER_NAMES) == list(expected)
    for name in PARAMETER_NAMES:
        assert torch.equal(actual[name], expected[name]), name


def test_initial_parameters_ignore_concurrent_global_seeding():
    """Another thread calling torch.manual_seed meanwhile does not change the drawn weights."""
    expected = {s: initial_parameters(10, s) for s in range(8)}
    stop = threading.Event()

    def reseed_and_draw():
        while not stop.is_set():
            torch.manual_seed(12345)
            torch.rand(64)

    other = threading.Thread(target=reseed_and_draw)
    other.start()
    try:
        drawn = [(s, initial_parameters(10, s)) for _ in range(50) for s in range(8)]
    finally:
        stop.set()
        other.join()
    for s, params in drawn:
        for name in PARAMETER_NAMES:
            assert torch.equal(params[name], expected[s][name])


def test_seeded_net_leaves_global_generator_alone():
    """seeded_net draws nothing from the global generator and holds initial_parameters."""
    torch.manual_seed(7)
    before = torch.get_rng_state()
    net = seeded_net(12, 3)
    assert torch.equal(torch.get_rng_state(), before)
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, initial_parameters(12, 3)[name])


def test_neural_net_returns_one_logit_per_row():
    """NeuralNet(4, h, 1) maps (N, 4) to (N, 1)."""
    assert seeded_net(5, 0)(torch.zeros(7, 4)).shape == (7, 1)

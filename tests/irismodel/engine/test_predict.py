"""Predictions of stacked models equal the notebook's network's."""

import numpy as np
import torch

from irismodel.engine import predict_proba, train_batched
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

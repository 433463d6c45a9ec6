"""The reference engine is the notebook's loop: its literal code, bit for bit."""

import numpy as np
import pytest
import torch
from torch import nn

from irismodel.engine import train_reference
from irismodel.model import PARAMETER_NAMES, NeuralNet


def notebook_loop(x, y, hidden_dim, seed, epochs, device):
    """The notebook's first loop, literally, with the global seed."""
    torch.manual_seed(seed)
    model = NeuralNet(4, hidden_dim, 1).to(device)
    X = torch.tensor(x, dtype=torch.float32, device=device)
    y = torch.tensor(y, dtype=torch.float32, device=device).view(-1, 1)
    criterion = nn.BCEWithLogitsLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(epochs):
        outputs = model(X)
        loss = criterion(outputs, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return np.array(losses, np.float32), {n: p.detach().cpu() for n, p in model.named_parameters()}


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_reference_engine_is_the_notebook_loop_bit_for_bit(iris, seed, device):
    """The reference engine equals the notebook's literal code, bit for bit, for any seed."""
    x, y = iris
    expected_curve, expected_params = notebook_loop(x, y, 10, seed, 300, device)
    run = train_reference(x, y, 10, "sgd", [seed], 0.1, 300, device=device)
    np.testing.assert_array_equal(run.loss_curves[0], expected_curve)
    for name in PARAMETER_NAMES:
        np.testing.assert_array_equal(run.parameters[name][0], expected_params[name].numpy())


def test_the_notebook_s_manual_line_equals_torch_sgd_up_to_float32_rounding(iris, device):
    """`p -= lr * p.grad` (the notebook's line) is SGD rounded twice: not bit for bit, but close."""
    x, y = iris
    seeds = [0, 1, 2]
    sgd = train_reference(x, y, 10, "sgd", seeds, 0.1, 100, device=device)
    manual = train_reference(x, y, 10, "manual", seeds, 0.1, 100, device=device)
    difference = np.abs(manual.loss_curves - sgd.loss_curves)
    assert difference.max() > 0  # two roundings are not SGD's one
    assert difference.max() < 1e-5  # float32 rounding, not another algorithm

"""The notebook's network, 4-h-1 with one ReLU layer, and its seeded initial weights."""

from __future__ import annotations

import math

import torch
from torch import nn

PARAMETER_NAMES = ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")


class NeuralNet(nn.Module):
    """The notebook's `NeuralNet`: fc1, ReLU, fc2, returning one logit per row."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden_dim, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu(self.fc1(x)))


def _linear_init(
    in_features: int, out_features: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    # nn.Linear.reset_parameters, drawing from `generator` instead of the global generator.
    weight = torch.empty(out_features, in_features)
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
    bound = 1 / math.sqrt(in_features) if in_features > 0 else 0
    bias = nn.init.uniform_(torch.empty(out_features), -bound, bound, generator=generator)
    return weight, bias


def initial_parameters(hidden_dim: int, seed: int, input_dim: int = 4) -> dict[str, torch.Tensor]:
    """Return the initial weights of `torch.manual_seed(seed); NeuralNet(input_dim, hidden_dim, 1)`.

    They are drawn from a private `torch.Generator`, so callers in other threads cannot
    disturb them, as they can disturb the process-wide generator behind `torch.manual_seed`.
    Keys are `PARAMETER_NAMES`; shapes (H, D), (H,), (1, H), (1,).
    """
    generator = torch.Generator().manual_seed(seed)
    fc1_weight, fc1_bias = _linear_init(input_dim, hidden_dim, generator)
    fc2_weight, fc2_bias = _linear_init(hidden_dim, 1, generator)
    return dict(zip(PARAMETER_NAMES, (fc1_weight, fc1_bias, fc2_weight, fc2_bias), strict=True))


def seeded_net(hidden_dim: int, seed: int, input_dim: int = 4) -> NeuralNet:
    """Return `NeuralNet(input_dim, hidden_dim, 1)` holding the initial weights of seed `seed`."""
    with torch.device("meta"):  # construction on meta draws nothing from the global generator
        net = NeuralNet(input_dim, hidden_dim, 1)
    net.load_state_dict(initial_parameters(hidden_dim, seed, input_dim), assign=True)
    return net

"""The notebook's network, 4-h-1 with one ReLU layer: seeded initial weights, or trained ones."""

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import torch
from torch import nn

from irismodel.store.listing import list_result_files
from irismodel.store.locations import resolve
from irismodel.store.reader import Source

PARAMETER_NAMES = ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")
INPUT_DIM = 4
# A results row's weight column of each parameter (schema version 5 on), flattened row-major.
WEIGHT_COLUMNS = {name: name.replace(".", "_") for name in PARAMETER_NAMES}
KEY_COLUMNS = ("hidden_dim", "optimizer", "seed", "split_seed")


class NeuralNet(nn.Module):
    """The notebook's `NeuralNet`: fc1, ReLU, fc2, returning one logit per row."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden_dim, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu(self.fc1(x)))


def parameter_shapes(hidden_dim: int, input_dim: int = INPUT_DIM) -> dict[str, tuple[int, ...]]:
    """Return the shape of each of `NeuralNet(input_dim, hidden_dim, 1)`'s parameters, by name."""
    shapes = ((hidden_dim, input_dim), (hidden_dim,), (1, hidden_dim), (1,))
    return dict(zip(PARAMETER_NAMES, shapes, strict=True))


def _linear_init(
    in_features: int, out_features: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    # nn.Linear.reset_parameters, drawing from `generator` instead of the global generator.
    weight = torch.empty(out_features, in_features)
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
    bound = 1 / math.sqrt(in_features) if in_features > 0 else 0
    return weight, nn.init.uniform_(torch.empty(out_features), -bound, bound, generator=generator)


def initial_parameters(hidden_dim: int, seed: int, input_dim: int = 4) -> dict[str, torch.Tensor]:
    """Return the initial weights of `manual_seed(seed); NeuralNet(input_dim, hidden_dim, 1)`."""
    generator = torch.Generator().manual_seed(seed)  # private: other threads cannot disturb it
    fc1 = _linear_init(input_dim, hidden_dim, generator)
    fc2 = _linear_init(hidden_dim, 1, generator)
    return dict(zip(PARAMETER_NAMES, (*fc1, *fc2), strict=True))


def seeded_net(hidden_dim: int, seed: int, input_dim: int = 4) -> NeuralNet:
    """Return `NeuralNet(input_dim, hidden_dim, 1)` holding the initial weights of seed `seed`."""
    return _net_holding(initial_parameters(hidden_dim, seed, input_dim))


def _net_holding(weights: dict[str, torch.Tensor]) -> NeuralNet:
    hidden_dim, input_dim = weights["fc1.weight"].shape
    with torch.device("meta"):  # construction on meta draws nothing from the global generator
        net = NeuralNet(input_dim, hidden_dim, 1)
    net.load_state_dict(weights, assign=True)
    return net


def _weights_of(row: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    for column in ("hidden_dim", *WEIGHT_COLUMNS.values()):
        if column not in row:
            raise ValueError(
                f"row: has no column {column!r}; load_model needs hidden_dim and the weight "
                f"columns {', '.join(WEIGHT_COLUMNS.values())} of a results row"
            )
    hidden_dim = row["hidden_dim"]
    if hidden_dim is None or pd.isna(hidden_dim) or int(hidden_dim) < 1:
        raise ValueError(f"row: hidden_dim must be a positive integer, got {hidden_dim!r}")
    hidden_dim = int(hidden_dim)
    shapes = parameter_shapes(hidden_dim)
    weights = {}
    for name, column in WEIGHT_COLUMNS.items():
        value = row[column]
        # all four are written together; a NaN fc2_bias is a diverged model's, not a null
        if value is None or (np.ndim(value) == 0 and name != "fc2.bias" and pd.isna(value)):
            raise ValueError(
                f"row: {column} is null: the row was written before schema version 5, which "
                "added the trained weights; train the model again to load it"
            )
        values = np.asarray(value, dtype=np.float32).reshape(-1)
        if values.size != math.prod(shapes[name]):
            raise ValueError(
                f"row: {column} holds {values.size} values; a model of hidden_dim {hidden_dim} "
                f"has {math.prod(shapes[name])} ({' x '.join(map(str, shapes[name]))}, row-major)"
            )
        weights[name] = torch.from_numpy(values.reshape(shapes[name]).copy())
    return weights


def _row_at(location: str, key: dict[str, Any]) -> dict[str, Any]:
    """Return the one row of model `key` among the published runs at `location`."""
    fs, _ = resolve(location, "location")
    keep = ds.field("hidden_dim") == key["hidden_dim"]
    for name in KEY_COLUMNS[1:]:
        keep &= ds.field(name) == key[name]
    columns = ["flow_run_id", *KEY_COLUMNS, *WEIGHT_COLUMNS.values()]
    source = Source(list_result_files(location), fs, strict=True)
    batches = [b for i in range(len(source)) for b in source.batches(i, columns, 1 << 16, keep)]
    schema = pa.schema([source.dataset.schema.field(c) for c in columns])
    rows = pa.Table.from_batches(batches, schema).to_pylist()
    described = ", ".join(f"{name}={value!r}" for name, value in key.items())
    if not rows:
        raise LookupError(f"load_model: no model {described} in {location!r}")
    if len(rows) > 1:
        runs = sorted({row["flow_run_id"] for row in rows})
        raise LookupError(
            f"load_model: {len(rows)} models {described} in {location!r}, of the runs "
            f"{', '.join(runs)}; give one run's folder"
        )
    return rows[0]


def load_model(
    source: Mapping[str, Any] | str | os.PathLike[str],
    hidden_dim: int | None = None,
    optimizer: str | None = None,
    seed: int | None = None,
    split_seed: int | None = None,
) -> NeuralNet:
    """Return the notebook's `NeuralNet(4, hidden_dim, 1)` holding a model's trained weights.

    `source`: one results row (a mapping), or a location (a run folder, or a folder of runs
    holding that model once) with the model's `hidden_dim`, `optimizer`, `seed`, `split_seed`.
    In evaluation mode, stored float32 weights (NaN where diverged); schema 4 rows: ValueError.
    """
    if isinstance(source, str | os.PathLike):
        key = dict(zip(KEY_COLUMNS, (hidden_dim, optimizer, seed, split_seed), strict=True))
        for name, value in key.items():
            wanted = str if name == "optimizer" else int
            if not isinstance(value, wanted) or isinstance(value, bool):
                raise ValueError(
                    f"{name}: load_model from a location needs the model's {name} "
                    f"({wanted.__name__}), got {value!r}"
                )
        source = _row_at(os.fspath(source), key)
    elif not hasattr(source, "__getitem__"):
        raise ValueError(f"source: expected a results row or a location, got {type(source)}")
    return _net_holding(_weights_of(source)).eval()

"""Each row holds its model's trained weights, and `load_model` returns that model, predictions and
all; rows of older schema versions read with the weights null and say so when loaded."""

import dataclasses
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from irismodel import load_model, read_results
from irismodel.data import load_dataset, split_dataset
from irismodel.engine import predict_proba, train_batched
from irismodel.metrics import METRIC_NAMES, binary_metrics
from irismodel.model import NeuralNet
from irismodel.parameters import SweepConfig
from irismodel.preflight import check_splits
from irismodel.reference import check_against_reference
from irismodel.store.layout import META_SCHEMA_VERSION
from irismodel.store.schema import ADDED_IN_5, SCHEMA_V4
from irismodel.sweep import RunContext, run_sweep, shard_table

KEY = ("hidden_dim", "optimizer", "seed", "split_seed")
# the metrics that score predicted classes; ROC AUC and log loss score probabilities
CLASS_METRICS = ("accuracy", "precision", "recall", "f1")


def _config(folder: Path) -> SweepConfig:
    return SweepConfig(
        hidden_dims=[3, 8],
        optimizers=["sgd", "adam"],
        seeds="0..4",
        split_seeds="0..1",
        epochs=50,
        output_dir=str(folder),
    )


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A real run of 40 models on two splits: its config, folder and rows."""
    config = _config(tmp_path_factory.mktemp("results"))
    path = run_sweep(config, flow_run_id="small")
    return config, Path(path), read_results(path)


def _key(row) -> dict:
    return {
        "hidden_dim": int(row.hidden_dim),
        "optimizer": str(row.optimizer),
        "seed": int(row.seed),
        "split_seed": int(row.split_seed),
    }


def _stored(row, part: str) -> np.ndarray:
    return np.array([row[f"{part}_{name}"] for name in METRIC_NAMES], dtype=np.float64)


def _metrics(probabilities: np.ndarray, y: np.ndarray, diverged: bool) -> np.ndarray:
    scores = binary_metrics(probabilities[None], y, np.array([diverged]))
    return np.array([scores[name][0] for name in METRIC_NAMES])


def test_every_loaded_model_reproduces_its_rows_test_metrics(small_run):
    """For every row of a real run, the loaded NeuralNet predicts the held-out rows of the row's
    split exactly as stored: the notebook's forward pass gives the same classes (accuracy,
    precision, recall, F1), and its weights give every stored metric bit for bit."""
    config, path, frame = small_run
    splits = check_splits(config)
    assert len(frame) == 40 and set(frame.split_seed) == {0, 1}
    for _, row in frame.iterrows():
        net = load_model(row)
        hidden = int(row.hidden_dim)
        assert isinstance(net, NeuralNet) and not net.training
        assert (net.fc1.in_features, net.fc1.out_features, net.fc2.out_features) == (4, hidden, 1)
        assert all(p.dtype == torch.float32 for p in net.parameters())
        split = splits[int(row.split_seed)]
        with torch.no_grad():
            logits = net(torch.as_tensor(split.x_test, dtype=torch.float32))
        notebook = torch.sigmoid(logits)[:, 0].numpy().astype(np.float64)
        got = _metrics(notebook, split.y_test, bool(row.diverged))
        stored = _stored(row, "test")
        classes = [METRIC_NAMES.index(name) for name in CLASS_METRICS]
        np.testing.assert_array_equal(got[classes], stored[classes])
        weights = {name: value.numpy()[None] for name, value in net.state_dict().items()}
        exact = _metrics(predict_proba(weights, split.x_test)[0], split.y_test, bool(row.diverged))
        np.testing.assert_array_equal(exact, stored)  # NaN where stored null
        train = predict_proba(weights, split.x_train)[0]
        np.testing.assert_array_equal(
            _metrics(train, split.y_train, bool(row.diverged)), _stored(row, "train")
        )


def test_a_model_loads_from_its_run_folder_by_its_key(small_run):
    """`load_model(run folder, hidden_dim, optimizer, seed, split_seed)` returns the same weights
    as the row of that key, for each row."""
    _, path, frame = small_run
    for _, row in frame.iloc[::7].iterrows():
        by_key = load_model(path, **_key(row)).state_dict()
        by_row = load_model(row).state_dict()
        assert all(torch.equal(by_key[name], by_row[name]) for name in by_row)


def test_a_diverged_models_nan_weights_load_as_nan(tmp_path):
    """The weights of a model that overflowed are stored as they ended, NaN included, and load so;
    its NaN predictions count as negatives, as its stored metrics do."""
    split = split_dataset(load_dataset(), test_size=0.25, split_seed=0)
    config = SweepConfig(output_dir=str(tmp_path))
    trained = train_batched(split.x_train, split.y_train, 5, "sgd", [0, 1, 2], 0.1, 10)
    weights = {name: values.copy() for name, values in trained.parameters.items()}
    weights["fc1.weight"][1] = np.nan
    weights["fc2.bias"][1] = np.inf
    run = dataclasses.replace(trained, parameters=weights)
    check = check_against_reference(split, run, 0.1, set(), 10)
    context = RunContext("run", datetime(2026, 1, 2, tzinfo=UTC), config, place=None)
    frame = shard_table(run, split, context, "h5-sgd-0000", "host:1", check, 0).to_pandas()
    assert frame.diverged.tolist() == [False, True, False]
    net = load_model(frame.iloc[1])
    assert torch.isnan(net.fc1.weight).all() and torch.isinf(net.fc2.bias).all()
    assert torch.equal(net.fc1.bias, torch.from_numpy(weights["fc1.bias"][1]))
    with torch.no_grad():
        probabilities = torch.sigmoid(net(torch.as_tensor(split.x_test)))[:, 0].numpy()
    assert np.isnan(probabilities).all()
    got = _metrics(probabilities.astype(np.float64), split.y_test, True)
    np.testing.assert_array_equal(got, _stored(frame.iloc[1], "test"))


def _as_version_4(run: Path, target: Path) -> Path:
    """Copy a run folder with its parts rewritten as schema version 4 wrote them: no weights."""
    shutil.copytree(run, target)
    for part in target.glob("*.parquet"):
        table = pq.read_table(part)
        meta = {**table.schema.metadata, META_SCHEMA_VERSION: b"4"}
        pq.write_table(table.select(SCHEMA_V4.names).replace_schema_metadata(meta), part)
    return target


def test_a_version_4_run_reads_with_the_weights_null_and_will_not_load(small_run, tmp_path):
    """A run written before the weights were stored reads with the weight columns null and every
    other value as written; loading one of its models names the missing column."""
    _, path, frame = small_run
    old = _as_version_4(path, tmp_path / path.name)
    assert pq.read_schema(next(old.glob("*.parquet"))).names == SCHEMA_V4.names
    read = read_results(str(old))
    assert list(read.columns) == list(frame.columns)
    for column in ADDED_IN_5:
        assert read[column].isna().all(), column
    same = [c for c in frame.columns if c not in ADDED_IN_5 and frame[c].dtype != object]
    assert read[same].equals(frame[same])
    with pytest.raises(ValueError, match=r"row: fc1_weight is null: .* before schema version 5"):
        load_model(read.iloc[0])
    with pytest.raises(ValueError, match=r"row: fc1_weight is null"):
        load_model(old, **_key(read.iloc[0]))


def test_rows_without_weights_or_of_another_shape_are_refused(small_run):
    """A row lacking a weight column, or holding one of the wrong size for its hidden_dim, is
    refused with the column named; so are a missing key and an unknown model of a location."""
    _, path, frame = small_run
    row = frame.iloc[0].to_dict()
    with pytest.raises(ValueError, match=r"row: has no column 'fc2_bias'"):
        load_model({k: v for k, v in row.items() if k != "fc2_bias"})
    hidden = int(row["hidden_dim"])
    short = {**row, "fc1_weight": row["fc1_weight"][:-1]}
    with pytest.raises(
        ValueError, match=rf"row: fc1_weight holds {4 * hidden - 1} values; a model of hidden_dim "
        rf"{hidden} has {4 * hidden} \({hidden} x 4, row-major\)"
    ):  # fmt: skip
        load_model(short)
    with pytest.raises(ValueError, match=r"split_seed: load_model from a location needs"):
        load_model(path, hidden_dim=3, optimizer="sgd", seed=0)
    with pytest.raises(LookupError, match=r"no model hidden_dim=3, optimizer='sgd', seed=99, "):
        load_model(path, hidden_dim=3, optimizer="sgd", seed=99, split_seed=0)


def test_a_location_of_two_runs_holding_the_model_asks_for_one_run(small_run, tmp_path):
    """Where two runs of a location hold the same key, `load_model` names both runs rather than
    pick one; the model loads from either run's folder."""
    _, path, frame = small_run
    location = tmp_path / "results"
    shutil.copytree(path, location / path.name)
    tiny = SweepConfig(
        hidden_dims=[3], optimizers=["sgd"], seeds="0", split_seeds="0", epochs=5,
        output_dir=str(location),
    )  # fmt: skip
    other = run_sweep(tiny, flow_run_id="other")
    key = {"hidden_dim": 3, "optimizer": "sgd", "seed": 0, "split_seed": 0}
    with pytest.raises(LookupError, match=r"2 models hidden_dim=3, .* runs other, small; give one"):
        load_model(location, **key)
    mine = load_model(location / path.name, **key).fc1.weight
    assert torch.equal(mine, load_model(frame[(frame[list(key)] == list(key.values())).all(axis=1)]
                                        .iloc[0]).fc1.weight)  # fmt: skip
    assert not torch.equal(mine, load_model(other, **key).fc1.weight)

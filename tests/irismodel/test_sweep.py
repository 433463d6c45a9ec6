"""Shards train, evaluate and write their own rows; the rows are the same however seeds are cut."""

import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import irismodel.sweep as sweep
from irismodel import store
from irismodel.data import load_dataset, split_dataset
from irismodel.engine import predict_proba, train_reference
from irismodel.metrics import binary_metrics
from irismodel.parameters import SweepConfig
from irismodel.store import layout, schema

STARTED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
ROW_KEY = ["hidden_dim", "optimizer", "seed"]
RUN_COLUMNS = {"flow_run_id", "run_started_at", "worker", "shard", "train_seconds"}


def _config(folder: Path, **overrides):
    params = dict(
        hidden_dims=[8, 11],
        optimizers=["sgd", "adam"],
        split_seeds="0",
        seeds=[0, 1, 2, 3, 4, 5, 6],
        epochs=80,
        output_dir=str(folder),
        device="cpu",
    )
    return SweepConfig(**{**params, **overrides})


def _by_model(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(ROW_KEY).reset_index(drop=True)


def _assert_same_models(first: pd.DataFrame, second: pd.DataFrame) -> None:
    first, second = _by_model(first), _by_model(second)
    assert len(first) == len(second) > 0
    for column in schema.COLUMNS:
        if column in RUN_COLUMNS:
            continue
        if column == "loss_curve":
            for a, b in zip(first[column], second[column], strict=True):
                assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
        else:
            pd.testing.assert_series_equal(first[column], second[column], check_exact=True)


def test_rows_are_bit_identical_whatever_the_shard_size(tmp_path):
    """A configuration in one shard or cut into shards of 1, 2 or 3 seeds gives the same rows."""
    whole = sweep.run_sweep(_config(tmp_path / "whole"), "whole", STARTED)
    reference = store.read_results(whole)
    assert reference["shard"].nunique() == 4  # one shard per configuration
    for size in (1, 2, 3):
        path = sweep.run_sweep(_config(tmp_path / f"s{size}", shard_size=size), f"s{size}")
        frame = store.read_results(path)
        assert frame["shard"].nunique() == 4 * -(-7 // size)
        _assert_same_models(frame, reference)


def test_rows_match_an_independent_evaluation(tmp_path):
    """Each row's curve and metrics equal the reference engine's model evaluated independently."""
    config = _config(tmp_path, hidden_dims=[8], optimizers=["sgd"], seeds=[0, 1, 2], epochs=40,
                     test_size=0.3, split_seeds="4")  # fmt: skip
    frame = _by_model(store.read_results(sweep.run_sweep(config, "run")))
    split = split_dataset(load_dataset(), test_size=0.3, split_seed=4)
    reference = train_reference(split.x_train, split.y_train, 8, "sgd", [0, 1, 2], 0.1, 40)
    test_scores = binary_metrics(predict_proba(reference.parameters, split.x_test), split.y_test)
    for i, row in frame.iterrows():
        assert (row["hidden_dim"], row["optimizer"], row["seed"]) == (8, "sgd", i)
        np.testing.assert_allclose(row["loss_curve"], reference.loss_curves[i], rtol=1e-5)
        assert row["test_accuracy"] == test_scores["accuracy"][i]
        assert row["n_train"] + row["n_test"] == 150 and not row["diverged"]
        assert row["n_train_positive"] == split.y_train.sum()
        assert row["n_test_positive"] == split.y_test.sum()
        assert row["final_train_loss"] == row["loss_curve"][-1]


def _unfinished(folder: Path, run_id: str, **overrides):
    """Open a run and write only its first two shards, as a run killed mid-sweep leaves it."""
    config = _config(folder, shard_size=3, **overrides)
    opened = store.open_run(config, run_id, STARTED)
    split = split_dataset(load_dataset())
    shards = store.plan_shards(config)
    for shard in shards[:2]:
        sweep.run_shard(split, shard, sweep.context_of(opened, config))
    return config, opened, shards


def test_resume_keeps_checked_shards_and_retrains_the_rest(tmp_path, monkeypatch):
    """A resumed run trains only its missing shards and reuses the written ones, bit for bit."""
    folder = tmp_path / "out"
    config, opened, shards = _unfinished(folder, "killed")
    written = {p.name: p.read_bytes() for p in (folder / layout.STAGING).glob("*/*.parquet")}
    reopened = store.open_run(config, "killed")
    assert reopened.resumed and reopened.started_at == opened.started_at
    assert reopened.finished == {shards[0].name, shards[1].name}

    trained = []
    real = sweep.train_batched
    monkeypatch.setattr(
        sweep,
        "train_batched",
        lambda *a, **k: trained.append((a[2], a[3], tuple(a[4]))) or real(*a, **k),
    )
    path = sweep.run_sweep(config, "killed")
    assert len(trained) == len(shards) - 2
    first = (shards[0].hidden_dim, shards[0].optimizer, tuple(shards[0].seeds(config)))
    assert first not in trained
    for name, blob in written.items():
        assert (Path(path) / name).read_bytes() == blob
    fresh = sweep.run_sweep(_config(tmp_path / "fresh", shard_size=3), "fresh")
    _assert_same_models(store.read_results(path), store.read_results(fresh))


@pytest.mark.parametrize(
    "damage",
    ["truncated", "another shard's file", "another run's file", "other epochs", "not parquet"],
)
def test_resume_treats_a_damaged_or_foreign_part_as_missing(tmp_path, damage):
    """A part that does not hold exactly its shard is a miss: trained again, never read as data."""
    folder = tmp_path / "out"
    config, opened, shards = _unfinished(folder, "run")
    staged = folder / layout.STAGING / opened.place.folder
    target = staged / shards[0].file_name
    if damage == "truncated":
        target.write_bytes(target.read_bytes()[:-100])
    elif damage == "another shard's file":
        shutil.copy(staged / shards[1].file_name, target)
    elif damage == "another run's file":
        other_config, other, _ = _unfinished(tmp_path / "other", "other-run")
        other_part = tmp_path / "other" / layout.STAGING / other.place.folder / target.name
        shutil.copy(other_part, target)
    elif damage == "other epochs":
        table = pq.read_table(target)
        pq.write_table(table.slice(0, 2).replace_schema_metadata(table.schema.metadata), target)
    else:
        target.write_bytes(b"not parquet at all")
    reopened = store.open_run(config, "run")
    assert reopened.finished == {shards[1].name}
    path = sweep.run_sweep(config, "run")
    frame = store.read_results(path)
    assert len(frame) == 28 and frame["flow_run_id"].eq("run").all()
    fresh = sweep.run_sweep(_config(tmp_path / "fresh", shard_size=3), "fresh")
    _assert_same_models(frame, store.read_results(fresh))

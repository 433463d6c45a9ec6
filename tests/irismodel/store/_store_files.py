"""Helpers of the store tests: runs with made-up rows (no training), and files made by hand.

Run as a script, `python _store_files.py write-loop OUTPUT_DIR ROWS EPOCHS` builds one results
table, prints `ready`, then writes it as new version 1 files under OUTPUT_DIR through the
atomic writer until it is killed.
"""

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from irismodel.data import load_dataset
from irismodel.store import OpenedRun, Shard, open_run, plan_shards, publish_run
from irismodel.store.layout import (
    META_PARAMETERS,
    META_SCHEMA_VERSION,
    META_STATUS,
    run_folder_name,
    writer_id,
)
from irismodel.store.schema import COLUMNS, SCHEMA, SCHEMA_VERSION, part_metadata
from irismodel.store.writer import write_atomically, write_file, write_parquet

STARTED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def file_name(run_id: str, started_at: datetime) -> str:
    """The single-file name a version 1 run used."""
    return run_folder_name(run_id, started_at) + ".parquet"


def config(folder: Path | str, **overrides):
    """A small sweep's config: 2 hidden dims x 2 optimizers x 7 seeds, one split, 80 epochs."""
    from irismodel.parameters import SweepConfig  # torch with it: not in the write-loop script

    params = dict(hidden_dims=[8, 11], optimizers=["sgd", "adam"], split_seeds="0",
                  seeds=[0, 1, 2, 3, 4, 5, 6], epochs=80, output_dir=str(folder),
                  device="cpu")  # fmt: skip
    return SweepConfig(**{**params, **overrides})


def shard_rows(opened: OpenedRun, config, shard: Shard, fingerprint: str) -> pa.Table:
    """Made-up rows of one shard, with everything the resume and publication checks look at."""
    seeds = shard.seeds(config)
    rng = np.random.default_rng([shard.hidden_dim, shard.index, len(shard.optimizer)])
    curves = rng.random((len(seeds), config.epochs), dtype=np.float32)
    rows = [
        {
            **dict.fromkeys(COLUMNS),
            "flow_run_id": opened.run_id,
            "run_started_at": opened.started_at,
            "run_status": "complete",
            "hidden_dim": shard.hidden_dim,
            "optimizer": shard.optimizer,
            "seed": seed,
            "learning_rate": config.learning_rate,
            "epochs": config.epochs,
            "test_size": config.test_size,
            "split_seed": shard.split_seed,
            "standardize": config.standardize,
            "positive_class": "versicolor",
            "data_source": "bundled:iris",
            "data_fingerprint": fingerprint,
            "n_train": 112,
            "n_test": 38,
            "device": "cpu",
            "engine": "made-up",
            "worker": writer_id(),
            "shard": shard.name,
            "loss_curve": curve.tolist(),
            "final_train_loss": float(curve[-1]),
            "diverged": False,
            "train_seconds": 0.0,
        }  # fmt: skip
        for seed, curve in zip(seeds, curves, strict=True)
    ]
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    meta = part_metadata(config.parameters(), opened.run_id, shard.name, writer_id())
    return table.replace_schema_metadata(meta)


def write_shards(opened: OpenedRun, config, shards: list[Shard] | None = None) -> None:
    """Write the part files of `shards` (default: all) into the run's staging folder."""
    fingerprint = load_dataset(config.data_path).fingerprint()
    for shard in plan_shards(config) if shards is None else shards:
        table = shard_rows(opened, config, shard, fingerprint)
        names = opened.place.staging_names(shard.file_name)
        write_file(opened.place.root, names, lambda s, t=table: write_parquet(t, s), replace=True)


def unfinished(folder: Path, run_id: str, **overrides):
    """Open a run and write only its first two shards, as a run killed mid-sweep leaves it."""
    sweep = config(folder, shard_size=3, **overrides)
    opened = open_run(sweep, run_id, STARTED)
    shards = plan_shards(sweep)
    write_shards(opened, sweep, shards[:2])
    return sweep, opened, shards


def published(config, run_id: str, started: datetime | None = STARTED) -> str:
    """Open, write and publish a whole run (or finish one found unfinished); its folder."""
    opened = open_run(config, run_id, started)
    if opened.published:
        return opened.place.published
    write_shards(opened, config, [s for s in plan_shards(config) if s.name not in opened.finished])
    path = publish_run(opened.place, [], config, opened.run_id)
    assert path is not None
    return path


def synthetic_table(run_id: str, rows: int = 4, epochs: int = 10, seed: int = 0) -> pa.Table:
    """A valid version 1 style results table of `rows` made-up models, with its metadata."""
    rng = np.random.default_rng(seed)
    records = []
    for index in range(rows):
        curve = rng.random(epochs, dtype=np.float32)
        records.append({
            **dict.fromkeys(COLUMNS),
            "flow_run_id": run_id, "run_started_at": STARTED, "run_status": "complete",
            "hidden_dim": 8, "optimizer": "sgd", "seed": index, "learning_rate": 0.1,
            "epochs": epochs, "test_size": 0.25, "split_seed": 0, "standardize": False,
            "positive_class": "versicolor", "data_source": "bundled:iris",
            "data_fingerprint": "0" * 64, "n_train": 112, "n_test": 38, "device": "cpu",
            "engine": "batched", "worker": "test:0", "loss_curve": curve.tolist(),
            "final_train_loss": float(curve[-1]), "diverged": False, "train_accuracy": 0.9,
            "train_seconds": 0.01,
        })  # fmt: skip
    table = pa.Table.from_pylist(records, schema=SCHEMA)
    return table.replace_schema_metadata({
        META_SCHEMA_VERSION: SCHEMA_VERSION,
        META_PARAMETERS: json.dumps({"hidden_dims": [8]}),
        META_STATUS: "complete",
    })  # fmt: skip


def write_single_file(table: pa.Table, folder: str, name: str) -> str:
    """Write `table` as one results file `name` in `folder` (as version 1 runs did), atomically."""
    return write_atomically(folder, name, lambda stream: write_parquet(table, stream))


def write_loop(output_dir: str, rows: int, epochs: int) -> None:
    """Write one table again and again under new names, until killed."""
    table = synthetic_table(f"loop-{os.getpid()}", rows, epochs, seed=os.getpid())
    print("ready", flush=True)
    for count in range(1_000_000):
        write_single_file(
            table, output_dir, file_name(f"loop-{os.getpid()}-{count}", datetime.now(UTC))
        )


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    if command != "write-loop":
        raise SystemExit(f"unknown command {command!r}; known: write-loop")
    write_loop(arguments[0], int(arguments[1]), int(arguments[2]))

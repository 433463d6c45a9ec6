"""One sweep's steps as plain functions: train a configuration (cached), evaluate it into rows."""

from __future__ import annotations

import hashlib
import os
import socket
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from irismodel import cache
from irismodel.config import SweepConfig, check_data
from irismodel.data import Split
from irismodel.engine import TrainingRun, predict_proba, train_batched
from irismodel.metrics import binary_metrics
from irismodel.results import file_name, rows_to_table, to_table, write_results


@dataclass(frozen=True)
class TrainedConfiguration:
    """A trained (hidden_dim, optimizer) batch, with where it was trained and if it was cached."""

    run: TrainingRun
    worker: str  # host:pid of the process that trained it
    cached: bool


@dataclass(frozen=True)
class RunContext:
    """What every row of one run shares."""

    flow_run_id: str
    run_started_at: datetime
    config: SweepConfig


def configuration_name(hidden_dim: int, optimizer: str) -> str:
    """Return the name of a (hidden_dim, optimizer) configuration, e.g. `h8-sgd`."""
    return f"h{hidden_dim}-{optimizer}"


def this_worker() -> str:
    """Return `host:pid` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def training_key(split: Split, hidden_dim: int, optimizer: str, config: SweepConfig) -> str:
    """Return the cache key of one configuration: its training data, parameters, device, code."""
    data = hashlib.sha256(split.x_train.tobytes() + split.y_train.tobytes()).hexdigest()
    return cache.cache_key(
        {
            "training_data": data,
            "hidden_dim": hidden_dim,
            "optimizer": optimizer,
            "seeds": list(config.seeds),
            "learning_rate": config.learning_rate,
            "epochs": config.epochs,
            "device": config.resolved_device,
        }
    )


def train_configuration(
    split: Split, hidden_dim: int, optimizer: str, config: SweepConfig, use_cache: bool = True
) -> TrainedConfiguration:
    """Train every seed of one (hidden_dim, optimizer), or load it from the output's cache."""
    key = training_key(split, hidden_dim, optimizer, config)
    location = cache.cache_location(config.output_dir)
    if use_cache:
        hit = cache.load(location, key)
        if hit is not None:
            run, extra = hit
            return TrainedConfiguration(run, str(extra.get("worker", "")), cached=True)
    run = train_batched(
        split.x_train,
        split.y_train,
        hidden_dim,
        optimizer,
        config.seeds,
        config.learning_rate,
        config.epochs,
        device=config.resolved_device,
    )
    worker = this_worker()
    if use_cache:
        try:
            cache.store(location, key, run, {"worker": worker})
        except OSError as error:
            # The cache only saves a rerun's time: a worker that cannot write it still delivers.
            warnings.warn(
                f"could not cache {configuration_name(hidden_dim, optimizer)}: {error}",
                stacklevel=2,
            )
    return TrainedConfiguration(run, worker, cached=False)


def evaluate_configuration(
    trained: TrainedConfiguration, split: Split, context: RunContext
) -> list[dict[str, Any]]:
    """Return one results row per seed: the run's parameters, loss curve and metrics."""
    run, config = trained.run, context.config
    k = len(run.seeds)
    finite_curve = np.isfinite(run.loss_curves).all(1)
    finite_params = np.ones(k, dtype=bool)
    for values in run.parameters.values():
        finite_params &= np.isfinite(values.reshape(k, -1)).all(1)
    diverged = ~(finite_curve & finite_params)
    metrics = {}
    for part, x, y in (
        ("train", split.x_train, split.y_train),
        ("test", split.x_test, split.y_test),
    ):
        scores = binary_metrics(predict_proba(run.parameters, x), y, diverged)
        for name, values in scores.items():
            metrics[f"{part}_{name}"] = values
    rows = []
    for i, seed in enumerate(run.seeds):
        curve = run.loss_curves[i]
        row: dict[str, Any] = {
            "flow_run_id": context.flow_run_id,
            "run_started_at": context.run_started_at,
            "hidden_dim": run.hidden_dim,
            "optimizer": run.optimizer,
            "seed": seed,
            "learning_rate": run.learning_rate,
            "epochs": run.epochs,
            "test_size": config.test_size,
            "split_seed": config.split_seed,
            "standardize": config.standardize,
            "positive_class": split.positive_class,
            "data_source": split.data_source,
            "data_fingerprint": split.data_fingerprint,
            "n_train": len(split.y_train),
            "n_test": len(split.y_test),
            "device": run.device,
            "engine": run.engine,
            "worker": trained.worker,
            "loss_curve": curve.tolist(),
            "final_train_loss": float(curve[-1]),
            "diverged": bool(diverged[i]),
            "train_seconds": run.train_seconds / k,
        }
        for name, values in metrics.items():
            value = float(values[i])
            row[name] = None if np.isnan(value) else value
        rows.append(row)
    return rows


def run_sweep(
    config: SweepConfig,
    flow_run_id: str = "local",
    started_at: datetime | None = None,
    use_cache: bool = True,
) -> str:
    """Run a whole sweep in this process, without Prefect: the flow's steps one after another.

    Takes a validated config (`validate_config`); returns the path of the Parquet file written.
    """
    split = check_data(config)
    context = RunContext(flow_run_id, started_at or datetime.now(UTC), config)
    tables = [
        rows_to_table(
            evaluate_configuration(
                train_configuration(split, hidden_dim, optimizer, config, use_cache), split, context
            )
        )
        for hidden_dim in config.hidden_dims
        for optimizer in config.optimizers
    ]
    table = to_table(tables, config.parameters())
    return write_results(table, config.output_dir, file_name(flow_run_id, context.run_started_at))

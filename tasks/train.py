"""Tasks that train one (hidden_dim, optimizer) for all seeds and evaluate it."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import torch
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed

from irismodel.data import Split
from irismodel.results import rows_to_table
from irismodel.sweep import (
    RunContext,
    TrainedConfiguration,
    configuration_name,
    evaluate_configuration,
    train_configuration,
)


@task(
    name="train",
    retries=2,
    retry_delay_seconds=1,
    cache_policy=NO_CACHE,  # irismodel.cache keeps trained runs as JSON, never as pickles
    persist_result=False,
)
def train(split: Split, hidden_dim: int, optimizer: str, context: RunContext) -> Any:
    """Train every seed of one configuration at once, or load it from the output's cache."""
    # Parallelism comes from tasks running side by side; one torch thread each keeps them from
    # oversubscribing the cores and keeps results independent of what runs beside them.
    torch.set_num_threads(1)
    trained = train_configuration(split, hidden_dim, optimizer, context.config)
    name = configuration_name(hidden_dim, optimizer)
    logger = get_run_logger()
    if trained.cached:
        logger.info("%s: loaded %d seeds from the cache", name, len(trained.run.seeds))
        return Completed(data=trained, name="Cached", message=f"{name} loaded from the cache")
    logger.info(
        "%s: trained %d seeds x %d epochs in %.2fs on %s",
        name,
        len(trained.run.seeds),
        trained.run.epochs,
        trained.run.train_seconds,
        trained.run.device,
    )
    return trained


@task(name="evaluate", retries=1, cache_policy=NO_CACHE, persist_result=False)
def evaluate(trained: TrainedConfiguration, split: Split, context: RunContext) -> pa.Table:
    """Compute the metrics of every seed of one configuration: one results row each."""
    # A table, not a list of dicts: Prefect walks nested lists of task inputs element by
    # element, which costs seconds for 140 loss curves of 1000 floats.
    return rows_to_table(evaluate_configuration(trained, split, context))

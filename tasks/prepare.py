"""Tasks that check the parameters and prepare the data, before any training starts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from irismodel.config import validate_config
from irismodel.data import Dataset, Split, load_dataset, split_dataset
from irismodel.sweep import RunContext


@task(name="validate-parameters", cache_policy=NO_CACHE, persist_result=False)
def validate_parameters(**parameters: Any) -> RunContext:
    """Check every parameter (device and output location included) and open the run."""
    config = validate_config(**parameters)
    get_run_logger().info(
        "sweep of %d configurations x %d seeds on %s, writing to %s",
        len(config.hidden_dims) * len(config.optimizers),
        len(config.seeds),
        config.resolved_device,
        config.output_dir,
    )
    return RunContext(
        flow_run_id=flow_run.get_id() or "local",
        run_started_at=datetime.now(UTC),
        config=config,
    )


@task(name="load-data", cache_policy=NO_CACHE, persist_result=False)
def load_data(data_path: str | None) -> Dataset:
    """Load the bundled Iris data or the given CSV/Parquet file."""
    dataset = load_dataset(data_path)
    get_run_logger().info("loaded %d rows from %s", len(dataset.labels), dataset.source)
    return dataset


@task(name="split-data", cache_policy=NO_CACHE, persist_result=False)
def split_data(dataset: Dataset, context: RunContext) -> Split:
    """Binarize by the positive class and split into training and test rows."""
    config = context.config
    split = split_dataset(
        dataset, config.positive_class, config.test_size, config.split_seed, config.standardize
    )
    get_run_logger().info(
        "%s against the rest: %d training rows, %d test rows",
        split.positive_class,
        len(split.y_train),
        len(split.y_test),
    )
    return split

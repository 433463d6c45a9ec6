"""Tasks that check the parameters, prepare the data and open the run, before any training."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.runtime import flow_run

from irismodel.config import SweepConfig, run_label, run_tags, validate_config
from irismodel.data import Dataset, Split, load_dataset, split_dataset
from irismodel.estimate import check_fits
from irismodel.estimate import forecast as estimate_here
from irismodel.reference import warm_up
from irismodel.store import open_run, plan_shards, resumed_config
from irismodel.store.locations import redact
from irismodel.sweep import RunContext, context_of


@task(name="validate-parameters", cache_policy=NO_CACHE, persist_result=False)
def validate_parameters(**parameters: Any) -> SweepConfig:
    """Check every parameter (device and output location included); a resume takes its run's."""
    config = validate_config(**parameters)
    if config.resume:
        config = resumed_config(config)
    # a resume runs its own parameters: name it after them, not after the defaults it was given
    tag_run(run_tags(config), run_label(config.parameters()) if config.resume else None)
    forecast = estimate_here(config)
    check_fits(config, forecast, config.force)
    if config.reference_seeds:
        warm_up()  # the notebook loop's first use, while the run opens
    get_run_logger().info("forecast: %s", forecast.text())
    get_run_logger().info(
        "sweep of %d configurations x %d seeds x %d splits (%d shards of up to %d seeds) on %s, "
        "into %s",
        len(config.hidden_dims) * len(config.optimizers),
        len(config.seed_set),
        len(config.split_set),
        len(plan_shards(config)),
        config.seeds_per_shard,
        config.resolved_device,
        redact(config.output_dir),
    )
    return config


def tag_run(tags: list[str], name: str | None = None) -> None:
    """Add `tags` to this flow run (ad hoc runs have none otherwise), and rename it to `name`.

    Never fails the run.
    """
    run_id = flow_run.get_id()
    if run_id is None:
        return
    try:
        with get_client(sync_client=True) as client:
            existing = client.read_flow_run(run_id).tags
            client.update_flow_run(run_id, tags=list(dict.fromkeys([*existing, *tags])), name=name)
    except Exception as error:  # tags help find runs; they are never worth failing one
        get_run_logger().warning("could not tag the run: %s", error)


@task(name="load-data", cache_policy=NO_CACHE, persist_result=False)
def load_data(data_path: str | None) -> Dataset:
    """Load the bundled Iris data or the given CSV/Parquet file."""
    dataset = load_dataset(data_path)
    get_run_logger().info("loaded %d rows from %s", len(dataset.labels), dataset.source)
    return dataset


@task(name="split-data", cache_policy=NO_CACHE, persist_result=False)
def split_data(dataset: Dataset, config: SweepConfig) -> dict[int, Split]:
    """Binarize by the positive class and split into training and test rows, once per split seed."""
    splits = {
        seed: split_dataset(
            dataset, config.positive_class, config.test_size, seed, config.standardize
        )
        for seed in config.split_set
    }
    first = next(iter(splits.values()))
    get_run_logger().info(
        "%s against the rest: %d training rows, %d test rows, %d split(s) (seeds %s)",
        first.positive_class,
        len(first.y_train),
        len(first.y_test),
        len(splits),
        config.split_set.text(),
    )
    return splits


@task(name="open-run", cache_policy=NO_CACHE, persist_result=False)
def open_sweep_run(
    config: SweepConfig, splits: dict[int, Split]
) -> tuple[RunContext, frozenset[str], bool]:
    """Open the run's staging folder, or find what an earlier attempt of it already wrote.

    The run records the data's fingerprint (the same in every split): a resume on other data
    is refused.

    Returns the context, the shards already written (and checked), and whether the run was
    already published.
    """
    fingerprint = next(iter(splits.values())).data_fingerprint
    opened = open_run(config, flow_run.get_id() or "local", fingerprint=fingerprint)
    logger = get_run_logger()
    if opened.published:
        logger.info(
            "run %s is already published: %s", opened.run_id, redact(opened.place.published)
        )
    elif opened.resumed:
        logger.info(
            "resuming run %s: %d of %d shards already written and checked",
            opened.run_id,
            len(opened.finished),
            len(plan_shards(config)),
        )
    else:
        logger.info(
            "run %s: shards go to %s; if it stops unfinished, finish it with "
            "`iris-sweep --resume %s` (or Retry in the UI)",
            opened.run_id,
            redact(opened.place.staging),
            opened.run_id,
        )
    return context_of(opened, config), opened.finished, opened.published

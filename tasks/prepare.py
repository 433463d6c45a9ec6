"""Tasks before any training: the run's pre-flight (parameters, data, forecast), the run opened."""

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.runtime import flow_run

from irismodel.data import Split
from irismodel.parameters import SweepConfig
from irismodel.preflight import Preflight, preflight, run_label, run_tags
from irismodel.reference import warm_up
from irismodel.store import open_run, plan_shards
from irismodel.store.locations import redact
from irismodel.sweep import RunContext, context_of


@task(name="preflight", cache_policy=NO_CACHE, persist_result=False)
def check_run(**parameters: Any) -> Preflight:
    """Check the run before any work (parameters, resume, data, forecast), once per run.

    A run the command line started takes the command line's pre-flight, made before Prefect
    started. A resume runs its stored parameters, and is tagged and named after them.
    """
    checked = preflight(parameters)
    config = checked.config
    tag_run(run_tags(config), run_label(config.parameters()) if config.resume else None)
    if config.reference_seeds:
        warm_up()  # the notebook loop's first use, while the run opens
    first = next(iter(checked.splits.values()))
    logger = get_run_logger()
    logger.info("forecast: %s", checked.forecast.text())
    logger.info(
        "%s against the rest in %s: %d training rows, %d test rows, %d split(s) (seeds %s)",
        first.positive_class,
        first.data_source,
        len(first.y_train),
        len(first.y_test),
        len(checked.splits),
        config.split_seeds.text(),
    )
    logger.info(
        "sweep of %d configurations x %d seeds x %d splits (%d shards of up to %d seeds) on %s, "
        "into %s",
        len(config.hidden_dims) * len(config.optimizers),
        len(config.seeds),
        len(config.split_seeds),
        len(plan_shards(config)),
        config.seeds_per_shard,
        config.resolved_device,
        redact(config.output_dir),
    )
    return checked


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

"""The task that finishes a run: publish its folder, or keep it in staging for a resume."""

from __future__ import annotations

from collections.abc import Sequence

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from irismodel.store import publish_run
from irismodel.store.locations import redact
from irismodel.sweep import RunContext


@task(
    name="publish-results",
    retries=2,
    retry_delay_seconds=1,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def publish_results(context: RunContext, failed: Sequence[str] = ()) -> str | None:
    """Publish the run's folder as a whole; with failed shards, keep it unpublished."""
    path = publish_run(context.place, list(failed), context.config, context.flow_run_id)
    logger = get_run_logger()
    if path is None:
        logger.warning(
            "%d shards failed; the finished ones stay in %s",
            len(failed),
            redact(context.place.staging),
        )
    else:
        logger.info("published run %s: %s", context.flow_run_id, redact(path))
    return path

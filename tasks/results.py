"""The task that finishes a run: publish its folder, or keep it in staging for a resume."""

from collections.abc import Mapping, Sequence

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from irismodel.store import Shard, locations, publish_run
from irismodel.sweep import RunContext


class SweepFailed(RuntimeError):
    """The run is left unpublished; the shards it wrote are kept for a resume."""


@task(
    name="publish-results",
    retries=2,
    retry_delay_seconds=1,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def publish_results(context: RunContext, failed: Sequence[str] = ()) -> str | None:
    """Publish the run's folder as a whole; with failed shards, keep it unpublished (None).

    Raises SweepFailed, saying how to finish the run, if the publication itself fails.
    """
    try:
        path = publish_run(context.place, list(failed), context.config, context.flow_run_id)
    except (OSError, ValueError) as error:  # disk full, a stranger in staging
        raise SweepFailed(
            f"the run could not be published: {locations.first_line(error)}. Its shards are kept, "
            f"unpublished, in {locations.redact(context.place.staging)}; fix the cause, then "
            f"finish the run with `iris-sweep --resume {context.flow_run_id}`"
        ) from error
    logger = get_run_logger()
    if path is None:
        logger.warning(
            "%d shards failed; the finished ones stay in %s",
            len(failed),
            locations.redact(context.place.staging),
        )
    else:
        logger.info("published run %s: %s", context.flow_run_id, locations.redact(path))
    return path


def failure_message(
    failed: Mapping[str, str],
    shards: Sequence[Shard],
    context: RunContext,
    stopped: str | None = None,
) -> str:
    """Return the message of a run whose `failed` shards (name -> cause) did not finish.

    `stopped` says why the wait for them ended early (a lost cluster). The kept shards are
    counted on disk: a task whose worker or scheduler died may have written its part before its
    state was lost.
    """
    names, total = list(failed), len(shards)
    listed = ", ".join(names[:20]) + (" ..." if len(names) > 20 else "")
    try:
        on_disk = {entry.base_name for entry in locations.list_folder(context.place.staging)}
        kept = len({shard.file_name for shard in shards} & on_disk)
    except (OSError, ValueError):
        kept = total - len(names)
    written = (
        f"{kept} of the {total} shards are written and kept, unpublished, in the run's staging "
        f"folder"
    )
    resume = f"`iris-sweep --resume {context.flow_run_id}`"
    if stopped:
        return (
            f"{stopped}; {len(names)} of {total} shards did not finish: {listed}. {written}; "
            f"start workers, then finish the run with {resume}, which trains only the missing "
            "shards"
        )
    cause = failed[names[0]]
    if cause in ("", "None"):
        cause = "no cause was reported (the worker or the scheduler running it may have died)"
    return (
        f"{len(names)} of {total} shards did not finish after their retries: {listed}. "
        f"{written}; finish the run with {resume} (or Retry in the UI), which trains only the "
        f"missing shards. First failure, {names[0]}: {cause}"
    )

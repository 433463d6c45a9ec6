"""The event a run's publication sends, `iris-sweep.run.published`: what automations trigger on."""

from collections.abc import Mapping
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from irismodel.store import count_models
from irismodel.store.listing import read_manifest
from irismodel.store.locations import base_name, redact, resolve
from tasks.api import api_answers

PUBLISHED_EVENT = "iris-sweep.run.published"
RESOURCE_PREFIX = "iris-sweep.run."  # + the run id: the resource an automation matches
LOCATION_LABEL = "iris-sweep.location"  # the run folder, without secrets


def published_event(
    path: str, answers: Mapping[str, Any] | None = None
) -> tuple[dict[str, str], dict[str, Any]]:
    """Return the resource and the payload of the event of the run published at `path`.

    The run's id and parameters are its manifest's; the rows are counted in its files.
    """
    fs, folder = resolve(path, "path")
    manifest = read_manifest(fs, folder)
    location = redact(path)
    resource = {
        "prefect.resource.id": f"{RESOURCE_PREFIX}{manifest['run_id']}",
        "prefect.resource.name": base_name(location),
        LOCATION_LABEL: location,
    }
    payload = {
        "run_id": manifest["run_id"],
        "location": location,
        "rows": count_models(path),
        "parameters": manifest["parameters"],
        "answers": None if answers is None else dict(answers),
    }
    return resource, payload


@task(name="announce-published", cache_policy=NO_CACHE, persist_result=False)
def announce_published(path: str, answers: Mapping[str, Any] | None = None) -> str | None:
    """Emit `iris-sweep.run.published` for the run just published at `path`; return its id.

    `answers` are the report's headline numbers (None without a report). Prefect adds the flow
    run, its flow and deployment, and their tags as related resources. The results are the
    product and the event a signal: if it cannot be sent (a Prefect API that does not answer,
    an unreadable folder) it is a warning and None, never a failed run.
    """
    logger = get_run_logger()
    if not api_answers():
        logger.warning("no %s event: the Prefect API does not answer", PUBLISHED_EVENT)
        return None
    try:
        resource, payload = published_event(path, answers)
        event = emit_event(PUBLISHED_EVENT, resource=resource, payload=payload)
    except Exception as error:
        logger.warning("no %s event: %s", PUBLISHED_EVENT, error)
        return None
    if event is None:  # Prefect logged why
        logger.warning("no %s event: Prefect did not send it", PUBLISHED_EVENT)
        return None
    logger.info("sent %s for run %s (%d rows)", PUBLISHED_EVENT, payload["run_id"], payload["rows"])
    return str(event.id)

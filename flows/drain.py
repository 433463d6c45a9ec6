"""Waiting for Prefect's temporary server to record every task run before it stops."""

from __future__ import annotations

import time

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    TaskRunFilter,
    TaskRunFilterState,
    TaskRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.logging import get_logger
from prefect.settings import get_current_settings

from tasks.api import API_TIMEOUT_SECONDS, bounded

_TEMPORARY: set[str] = set()


def api_answers() -> bool:
    """Whether the Prefect API this run reports to answers its health check now."""
    from flows.server import api_reachable

    url = get_current_settings().api.url
    return not url or api_reachable(url)


def register_temporary(api_url: str) -> None:
    """Mark `api_url` as a server that stops when this run's command ends (see flows/server.py)."""
    _TEMPORARY.add(api_url)


def uses_temporary_server() -> bool:
    """Whether runs go to a temporary server: Prefect's own (no API URL set) or the CLI's."""
    url = get_current_settings().api.url
    return not url or url in _TEMPORARY


_FINAL = [StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED]
_PAGE = 200  # task runs per request


def wait_until_recorded(flow_run_id: str, expected: int, timeout: float = 15.0) -> bool:
    """Wait until the server shows `expected` task runs of the flow run in a final state.

    Task run states reach the server as events, recorded in batches. The temporary server stops
    as soon as the run returns and would cut that off, logging errors; waiting here lets it
    finish. Returns whether everything was recorded within `timeout` seconds; False, with a
    warning, if the server does not answer.
    """
    try:
        return bounded(
            "the Prefect API",
            lambda: _wait_until_recorded(flow_run_id, expected, timeout),
            timeout + API_TIMEOUT_SECONDS,
        )
    except Exception as error:  # the results are written; a lost record is only a warning
        get_logger("iris-sweep").warning("task runs not all recorded: %s", error)
        return False


def _wait_until_recorded(flow_run_id: str, expected: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    run_filter = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    final = TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(any_=_FINAL)))
    with get_client(sync_client=True) as client:
        while True:
            recorded, offset = 0, 0
            while True:  # page through: a large sweep has more task runs than one request
                page = client.read_task_runs(
                    flow_run_filter=run_filter, task_run_filter=final, limit=_PAGE, offset=offset
                )
                recorded += len(page)
                offset += _PAGE
                if len(page) < _PAGE:
                    break
            if recorded >= expected or time.monotonic() > deadline:
                return recorded >= expected
            time.sleep(0.2)


def drain_clients(timeout: float = 10.0) -> None:
    """Send the logs and events this process still holds, before a temporary server stops.

    Without it, Prefect's workers keep retrying a server that is gone, for minutes at exit.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=timeout)

"""Waiting for Prefect's temporary server to record every task run before it stops."""

from __future__ import annotations

import time

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.settings import get_current_settings


def uses_temporary_server() -> bool:
    """Whether runs go to the temporary server Prefect starts when no API URL is set."""
    return not get_current_settings().api.url


def wait_until_recorded(flow_run_id: str, expected: int, timeout: float = 15.0) -> bool:
    """Wait until the server shows `expected` task runs of the flow run in a final state.

    Task run states reach the server as events, recorded in batches. The temporary server stops
    as soon as the run returns and would cut that off, logging errors; waiting here lets it
    finish. Returns whether everything was recorded within `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    run_filter = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=run_filter, limit=200)
            final = sum(1 for run in runs if run.state is not None and run.state.is_final())
            if final >= expected or time.monotonic() > deadline:
                return final >= expected
            time.sleep(0.2)

"""Calls to the Prefect API bounded in time, so a server that is gone never holds a run."""

import contextvars
import os
import ssl
from collections.abc import Callable
from typing import TypeVar

import certifi
import httpx

from irismodel.store.locations import within_time

# How long one call to the Prefect API may take before the run goes on without it: Prefect's
# client retries a server that is gone for about 75 s a call.
API_TIMEOUT_SECONDS = float(os.environ.get("IRIS_SWEEP_API_TIMEOUT", "15"))
T = TypeVar("T")


def bounded(what: str, function: Callable[[], T], seconds: float | None = None) -> T:
    """Return `function()` run with this context's settings, or raise `ValueError` after `seconds`.

    The call runs in a daemon thread with a copy of this context (the API URL of a temporary
    server lives in it), so a server that never answers holds that thread, not the run.
    """
    context = contextvars.copy_context()
    limit = API_TIMEOUT_SECONDS if seconds is None else seconds
    return within_time(what, lambda: context.run(function), limit)


def api_reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether GET `{url}/health` answers 200 (through the environment's proxies, as Prefect)."""
    from prefect.settings import get_current_settings

    # the TLS verification of Prefect's own client, so a self-hosted https API checks the same
    settings = get_current_settings().api
    verify = not settings.tls_insecure_skip_verify and ssl.create_default_context(
        cafile=settings.ssl_cert_file or certifi.where()
    )
    try:
        response = httpx.get(f"{url.rstrip('/')}/health", timeout=timeout, verify=verify)
    except (httpx.HTTPError, OSError):
        return False
    return response.status_code == 200


def api_answers() -> bool:
    """Whether the Prefect API this run reports to answers its health check now."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return not url or api_reachable(url)

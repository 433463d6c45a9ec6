"""Calls to the Prefect API bounded in time, so a server that is gone never holds a run."""

from __future__ import annotations

import contextvars
import os
from collections.abc import Callable
from typing import TypeVar

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

"""Shared test set-up: an isolated PREFECT_HOME, Prefect quiet offline, one test harness."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

# Before anything imports Prefect: a private home, so tests never touch the user's database.
_PREFECT_HOME = tempfile.mkdtemp(prefix="iris-sweep-tests-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY"] = "false"
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("IRIS_SWEEP_DASK_ADDRESS", None)
# Under pytest-xdist the test processes share the cores: one intra-op torch thread each (and in
# the processes they start), so that thread pools do not spin against each other. Tests that
# are about threads set their own count.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_PREFECT_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One Prefect test server for the whole session (it takes seconds to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield

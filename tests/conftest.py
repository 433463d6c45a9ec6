"""Shared test set-up: a private PREFECT_HOME, Prefect offline, one test harness, ready homes."""

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

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
def prefect_harness(
    prefect_home_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One Prefect server for the session's flows, this process's API; yields its URL.

    The command line's temporary server and settings (no heartbeats), in a copy of the set-up
    home: it starts in seconds, and dies with this process however it ends.
    """
    from cli.server import client_settings, temporary_server, wait_until_recorded

    home = shutil.copytree(prefect_home_template, tmp_path_factory.mktemp("harness") / "home")
    with temporary_server(home=Path(home)) as url, client_settings(url):
        yield url
        wait_until_recorded(None)  # send the logs and events still held before it stops


@pytest.fixture(scope="session")
def prefect_home_template(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A Prefect home whose database a server has set up once, made once for the session.

    A server's first start in an empty home migrates its database and registers the block
    types: about 4 s of CPU here, which a server starting in a copy of this home skips.
    """
    from filelock import FileLock

    from cli.server import temporary_server

    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent  # one for every xdist worker
    template = shared / "prefect-home-template"
    with FileLock(str(shared / "prefect-home-template.lock")):
        if not (template / "prefect.db").exists():
            home = shared / "prefect-home-template.making"
            shutil.rmtree(home, ignore_errors=True)
            with temporary_server(home=home, timeout=120):
                pass
            home.rename(template)
    return template


@pytest.fixture()
def prefect_home(prefect_home_template: Path, tmp_path: Path) -> Path:
    """A fresh PREFECT_HOME for this test's own server, its database already set up."""
    return Path(shutil.copytree(prefect_home_template, tmp_path / "prefect-home"))

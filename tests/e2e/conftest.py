"""Fixtures of the end-to-end tests: one real server, deployments and worker for the session."""

import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from . import servers

PREFECT = str(servers.BIN / "prefect")
PREFECT_YAML = servers.PROJECT_ROOT / "prefect.yaml"


@dataclass(frozen=True)
class PrefectServer:
    """A running Prefect server: its API URL and its private home (database, logs)."""

    api_url: str
    home: Path

    def env(self, **extra: str) -> dict[str, str]:
        """Return an environment for a child process that talks to this server."""
        return servers.prefect_env(self.home, self.api_url, extra)


@pytest.fixture(scope="session")
def prefect_server(prefect_home_template: Path) -> Iterator[PrefectServer]:
    """A `prefect server start` subprocess on a free loopback port, with its own PREFECT_HOME."""
    with tempfile.TemporaryDirectory(prefix="iris-sweep-e2e-prefect-") as folder:
        home = Path(shutil.copytree(prefect_home_template, Path(folder) / "home"))
        with servers.prefect_server(home) as api_url:
            yield PrefectServer(api_url, home)


@pytest.fixture()
def prefect_client(prefect_server: PrefectServer) -> Iterator:
    """A synchronous Prefect client of the session's server."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}),
        get_client(sync_client=True) as client,
    ):
        yield client


def work_pools() -> dict[str, str]:
    """Return the work pool names that prefect.yaml defines once, under `definitions`."""
    return yaml.safe_load(PREFECT_YAML.read_text())["definitions"]["work_pools"]


@dataclass(frozen=True)
class Deployed:
    """prefect.yaml deployed to the session's server, and a worker polling its process pool."""

    server: PrefectServer
    pools: dict[str, str]
    worker: servers.Worker


@pytest.fixture(scope="session")
def deployed(prefect_server: PrefectServer, tmp_path_factory) -> Iterator[Deployed]:
    """The pools created and `prefect deploy --all` run as the README says; a worker started.

    The worker starts in an unrelated folder: only the deployments' pull step can lead it to
    the code. It starts before the deploy, so that its start overlaps it.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.workers.process import ProcessWorker

    env = prefect_server.env()
    pools = work_pools()
    servers.run_cli([PREFECT, "work-pool", "create", pools["process"], "--type", "process"], env)
    # The GPU pool only has to exist for `deploy --all`; the client is quicker than a CLI.
    with (
        temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}),
        get_client(sync_client=True) as client,
    ):
        client.create_work_pool(
            WorkPoolCreate(
                name=pools["gpu"],
                type="process",
                base_job_template=ProcessWorker.get_default_base_job_template(),
            )
        )
    folder = tmp_path_factory.mktemp("worker")
    worker_env = prefect_server.env(PREFECT_WORKER_QUERY_SECONDS="1")
    worker = servers.Worker(pools["process"], worker_env, folder)
    worker.start()
    try:
        servers.run_cli([PREFECT, "--no-prompt", "deploy", "--all"], env, timeout=180)
        yield Deployed(prefect_server, pools, worker)
    finally:
        worker.stop()


@pytest.fixture()
def webhook() -> Iterator[servers.Webhook]:
    """A webhook receiver on loopback, for the notifications' POSTs."""
    hook = servers.Webhook()
    thread = threading.Thread(target=hook.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        hook.server.shutdown()
        hook.server.server_close()
        thread.join(10)

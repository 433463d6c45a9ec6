"""Fixtures of the end-to-end tests: one real `prefect server start` shared by the session."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import servers


@dataclass(frozen=True)
class PrefectServer:
    """A running Prefect server: its API URL and its private home (database, logs)."""

    api_url: str
    home: Path

    def env(self, **extra: str) -> dict[str, str]:
        """Return an environment for a child process that talks to this server."""
        return servers.prefect_env(self.home, self.api_url, extra)


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[PrefectServer]:
    """A `prefect server start` subprocess on a free loopback port, with its own PREFECT_HOME."""
    with tempfile.TemporaryDirectory(prefix="iris-sweep-e2e-prefect-") as folder:
        home = Path(folder)
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

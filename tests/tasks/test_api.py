"""Calls to the Prefect API end within their bound when the server stops answering."""

from __future__ import annotations

import contextlib
import socket
import threading


class _SilentServer:
    """A TCP port that accepts connections and never answers: a Prefect server that hangs."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}/api"
        self.accepted: list[object] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.accepted.append(self.socket.accept()[0])


def test_progress_and_records_give_up_on_an_api_that_hangs(monkeypatch):
    """Once the API stops answering, the progress bar and the wait for records each give up
    within their bound, and the progress bar is never tried again in that run."""
    import uuid

    from prefect.settings import PREFECT_API_URL, temporary_settings

    import tasks.api
    from flows.drain import wait_until_recorded
    from tasks.report import advance_progress, start_progress

    monkeypatch.setattr(tasks.api, "API_TIMEOUT_SECONDS", 1.0)
    server = _SilentServer()
    with temporary_settings(updates={PREFECT_API_URL: server.url}):
        assert start_progress(10) is None
        artifact = uuid.uuid4()
        advance_progress(artifact, 1, 10)
        tried = len(server.accepted)
        assert tried >= 2  # the creation and the first update each reached the server
        for done in range(2, 10):
            advance_progress(artifact, done, 10)
        assert len(server.accepted) == tried
        assert wait_until_recorded("00000000-0000-0000-0000-000000000000", 1, timeout=0.5) is False

"""Calls to the Prefect API end within their bound when the server stops answering."""

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


def test_progress_gives_up_on_an_api_that_hangs_and_is_not_tried_again(monkeypatch):
    """Once the API stops answering, the progress bar gives up within its bound, and after one
    failure it is never tried again in that run."""
    import uuid

    from prefect.settings import PREFECT_API_URL, temporary_settings

    import tasks.api
    from tasks.api import api_answers
    from tasks.report import Progress

    monkeypatch.setattr(tasks.api, "API_TIMEOUT_SECONDS", 1.0)
    server = _SilentServer()
    with temporary_settings(updates={PREFECT_API_URL: server.url}):
        progress = Progress(10)
        assert progress.artifact_id is None
        progress.artifact_id = uuid.uuid4()  # as if created before the API stopped answering
        progress.advance()
        tried = len(server.accepted)
        assert tried >= 2  # the creation and the first update each reached the server
        assert progress.artifact_id is None
        for _ in range(8):
            progress.advance()
        assert len(server.accepted) == tried and progress.done == 9
        assert api_answers() is False

"""A temporary local Prefect server that dies with the command line, and a check of a set API."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import certifi
import httpx

LOOPBACK = "127.0.0.1"
STOP_GRACE_SECONDS = 10.0  # it stops in well under 1 s after SIGTERM; room for a busy machine
LOG_TAIL_LINES = 30
PORT_ATTEMPTS = 3

# Run in the child between fork and exec of the server. PR_SET_PDEATHSIG makes the kernel send
# SIGKILL to the server when the process that started it dies, even by SIGKILL or the OOM killer,
# which no handler or atexit of ours can see. The setting survives exec. If the parent died before
# prctl, the child has been re-parented already and no signal would ever come: exit instead.
# A wrapper (not preexec_fn) keeps subprocess's fast, thread-safe spawn path.
_PDEATHSIG_WRAPPER = """\
import ctypes, os, signal, sys
parent = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) != 0:  # 1 = PR_SET_PDEATHSIG
    raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
if os.getppid() != parent:
    sys.exit(1)
os.execv(sys.argv[2], sys.argv[2:])
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def _server_env(home: Path | None, port: int, ui: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    # The server serves; it is no client of another API (and the caller has none set anyway).
    env.pop("PREFECT_API_URL", None)
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY"] = "false"
    # Like Prefect's own temporary server: no UI (nobody has a temporary server's page open).
    env["PREFECT_SERVER_UI_ENABLED"] = str(ui).lower()
    env["PREFECT_UI_API_URL"] = f"http://{LOOPBACK}:{port}/api"  # the page's API: this server
    env["PYTHONUNBUFFERED"] = "1"  # the log is complete when a failed start quotes it
    if home is not None:
        env["PREFECT_HOME"] = str(home)
    return env


def _server_args(port: int) -> list[str]:
    server = [sys.executable, "-m", "prefect", "server", "start"]
    server += ["--host", LOOPBACK, "--port", str(port), "--analytics-off"]
    if sys.platform.startswith("linux"):
        return [sys.executable, "-c", _PDEATHSIG_WRAPPER, str(os.getpid()), *server]
    return server  # no PR_SET_PDEATHSIG elsewhere: only the SIGTERM handler and `finally` stop it


def _log_tail(log: IO[bytes], since: int = 0, max_bytes: int = 64_000) -> str:
    # pread: the child shares the file's offset, so a seek here would misplace its next writes.
    size = os.fstat(log.fileno()).st_size
    start = max(since, size - max_bytes)
    lines = os.pread(log.fileno(), size - start, start).decode(errors="replace").splitlines()
    return "\n".join(lines[-LOG_TAIL_LINES:]) or "(empty log)"


def _exited(process: subprocess.Popen) -> bool:
    """Whether the child has exited, without reaping it.

    Unreaped, its pid stays a zombie, so its process group id cannot be reused and signalling
    the group reaches only what the server left behind.
    """
    if process.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _stop(process: subprocess.Popen, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM the server's process group, SIGKILL it after `grace` seconds, then reap."""
    if process.returncode is None:
        # The group id is the leader's pid (process_group=0); only what we started is in it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while not _exited(process) and time.monotonic() < deadline:
            time.sleep(0.05)
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)  # also any child the leader left
    process.wait()


def _healthy(client: httpx.Client, health_url: str) -> bool:
    try:
        return client.get(health_url).status_code == 200
    except httpx.HTTPError:
        return False


def _spawn(port: int, home: Path | None, log: IO[bytes], ui: bool) -> subprocess.Popen:
    return subprocess.Popen(
        _server_args(port),
        env=_server_env(home, port, ui),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        process_group=0,  # its own group: Ctrl-C misses it, killpg gets all of it
    )


def _wait_healthy(process: subprocess.Popen, api_url: str, deadline: float) -> bool:
    """Poll /health until it answers 200 (True), the server exits or the deadline passes."""
    # Loopback: never through a proxy from the environment.
    with httpx.Client(trust_env=False, timeout=2.0) as client:
        while not _healthy(client, f"{api_url}/health"):
            if _exited(process) or time.monotonic() > deadline:
                return False
            time.sleep(0.2)
    return True


def _sigterm_to_exit(signum: int, frame: object) -> None:
    # `kill <pid>` or `timeout` then unwinds the stack like an error: every `finally` runs,
    # the server among them, and the exit status is the usual 128 + SIGTERM.
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM during the block, then deliver them to the handlers of the time.

    A second Ctrl-C or `kill` (often sent at once, by `timeout` among others) would otherwise
    cut the server's stop short, before it was signalled or reaped.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread runs Python signal handlers, and only it can set them
        return
    held: list[int] = []
    replaced: dict[int, object] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if handler is not None and handler != signal.SIG_IGN:  # None: set outside Python
            replaced[signum] = signal.signal(signum, lambda number, frame: held.append(number))
    try:
        yield
    finally:
        for signum, handler in replaced.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(held):
            signal.raise_signal(signum)


def _stop_despite_signals(process: subprocess.Popen | None, log: IO[bytes]) -> None:
    """Stop the server and close its log, then raise what a signal raised meanwhile."""
    interrupted: BaseException | None = None
    while True:
        try:
            with _signals_held():
                if process is not None:
                    _stop(process)  # idempotent: a second round only reaps
                log.close()
            break
        except (KeyboardInterrupt, SystemExit) as error:
            # Raised before the signals were held (two Ctrl-C, or `timeout` forwarding its own
            # SIGINT, come microseconds apart), or delivered after: make sure of the stop first.
            interrupted = error
    if interrupted is not None:
        raise interrupted


@contextlib.contextmanager
def temporary_server(
    home: Path | None = None, timeout: float = 120.0, ui: bool = False
) -> Iterator[str]:
    """Run `prefect server start` on a free loopback port for the block; yield its API URL.

    The server is a child in its own process group, so Ctrl-C in a terminal reaches only the
    command line, which then stops the server after the flow run has been recorded. It is
    stopped on leaving the block however that happens; on Linux the kernel also kills it when
    the calling process dies (PR_SET_PDEATHSIG), even by SIGKILL. Call this from the thread that
    lives as long as the block (the signal follows the thread that started the server). From the
    main thread, SIGTERM raises SystemExit(143) during the block so that it unwinds.

    The database is that of `home` (PREFECT_HOME for the server), by default the user's Prefect
    home, as Prefect's own temporary server uses: runs stay visible to a later `prefect server
    start`. `ui` serves the UI too (off by default, like Prefect's own temporary server). Raises
    RuntimeError, with the end of the server's log, if it does not answer on
    /api/health within `timeout` seconds.
    """
    previous = signal.getsignal(signal.SIGTERM)
    # Handlers can only be set from the main thread; `None` marks a handler set outside Python,
    # which could not be restored: leave that alone.
    handle_sigterm = threading.current_thread() is threading.main_thread() and previous is not None
    if handle_sigterm:
        signal.signal(signal.SIGTERM, _sigterm_to_exit)
    process: subprocess.Popen | None = None
    # The log is a temporary file with no name (unlinked at once): nothing is left behind, even
    # when this process is SIGKILLed; its end goes into the error of a failed start.
    log = tempfile.TemporaryFile(prefix="iris-sweep-server-")  # noqa: SIM115 - closed below
    try:
        deadline = time.monotonic() + timeout
        for attempt in range(1, PORT_ATTEMPTS + 1):
            # The port is free now but only bound seconds later, after Prefect's imports: if
            # something took it meanwhile, the server exits at once, and another port will do.
            port = _free_port()
            api_url = f"http://{LOOPBACK}:{port}/api"
            since = os.fstat(log.fileno()).st_size
            process = _spawn(port, home, log, ui)
            if _wait_healthy(process, api_url, deadline):
                break
            if _exited(process):
                code = process.wait()
                tail = _log_tail(log, since)
                if "already in use" in tail.lower() and attempt < PORT_ATTEMPTS:
                    continue
                raise RuntimeError(
                    f"iris-sweep: the temporary Prefect server exited with code {code} before "
                    f"it answered on {api_url}; its log ends:\n{tail}"
                )
            raise RuntimeError(
                f"iris-sweep: the temporary Prefect server did not answer on {api_url} within "
                f"{timeout:g} s; its log ends:\n{_log_tail(log, since)}"
            )
        yield api_url
    finally:
        try:
            _stop_despite_signals(process, log)
        finally:
            if handle_sigterm:
                signal.signal(signal.SIGTERM, previous)


def _tls_context() -> ssl.SSLContext:
    """The TLS verification of Prefect's own client, so a self-hosted https API checks the same."""
    from prefect.settings import get_current_settings

    settings = get_current_settings().api
    if settings.tls_insecure_skip_verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=settings.ssl_cert_file or certifi.where())


def api_reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether GET `{url}/health` answers 200 (through the environment's proxies, as Prefect)."""
    try:
        response = httpx.get(f"{url.rstrip('/')}/health", timeout=timeout, verify=_tls_context())
    except (httpx.HTTPError, OSError):
        return False
    return response.status_code == 200


def _api_url_source() -> tuple[str, str]:
    """Say where PREFECT_API_URL comes from (in Prefect's precedence) and how to drop it."""
    from prefect.context import get_settings_context
    from prefect.settings import PREFECT_API_URL
    from prefect.settings.models.api import APISettings
    from prefect.settings.sources import (
        PrefectTomlConfigSettingsSource,
        PyprojectTomlConfigSettingsSource,
    )

    if os.environ.get("PREFECT_API_URL"):
        return "the environment", "unset PREFECT_API_URL"
    with contextlib.suppress(Exception):  # an unreadable file just leaves this source unnamed
        from dotenv import dotenv_values  # how pydantic-settings reads Prefect's .env

        if dotenv_values(".env").get("PREFECT_API_URL"):
            env_file = Path(".env").resolve()
            return f"the file {env_file}", f"remove PREFECT_API_URL from {env_file}"
    with contextlib.suppress(Exception):
        if PrefectTomlConfigSettingsSource(APISettings)().get("url"):
            toml = Path("prefect.toml").resolve()
            return f"the file {toml}", f"remove [api] url from {toml}"
    with contextlib.suppress(Exception):
        if PyprojectTomlConfigSettingsSource(APISettings)().get("url"):
            toml = Path("pyproject.toml").resolve()
            return f"the file {toml}", f"remove [tool.prefect.api] url from {toml}"
    profile = get_settings_context().profile
    if profile.settings.get(PREFECT_API_URL):
        return f"profile '{profile.name}'", "prefect config unset PREFECT_API_URL"
    return "the settings of this process", "prefect config unset PREFECT_API_URL"


def check_api(url: str) -> None:
    """Raise RuntimeError, in one line saying where the setting comes from, if `url` is down.

    Prefect Cloud is not checked: its workspace URLs need the API key, which Prefect's client
    sends and reports on itself.
    """
    from prefect.settings import get_current_settings

    if url.startswith(get_current_settings().cloud.api_url) or api_reachable(url):
        return
    where, drop = _api_url_source()
    raise RuntimeError(
        f"iris-sweep: the Prefect API at {url} (PREFECT_API_URL, from {where}) does not answer; "
        f"start that server (prefect server start) or drop the setting to use a temporary one: "
        f"{drop}"
    )

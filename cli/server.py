"""The command line's Prefect server: a temporary one that dies with it, or a set one checked."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx

from tasks.api import API_TIMEOUT_SECONDS, api_reachable, bounded

LOOPBACK = "127.0.0.1"
STOP_GRACE_SECONDS = 10.0  # it stops in well under 1 s after SIGTERM; room for a busy machine
LOG_TAIL_LINES = 30
PORT_ATTEMPTS = 3

# Run in the child before it execs the server: PR_SET_PDEATHSIG has the kernel SIGKILL the server
# when its parent dies, even by SIGKILL or the OOM killer, which no handler of ours sees; a parent
# gone before prctl means no signal will come: exit. (A wrapper keeps subprocess's fast spawn.)
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


def _log_tail(log: IO[bytes], since: int = 0, max_bytes: int = 64_000) -> str:
    # pread: the child shares the file's offset, so a seek here would misplace its next writes.
    size = os.fstat(log.fileno()).st_size
    start = max(since, size - max_bytes)
    lines = os.pread(log.fileno(), size - start, start).decode(errors="replace").splitlines()
    return "\n".join(lines[-LOG_TAIL_LINES:]) or "(empty log)"


def _exited(process: subprocess.Popen) -> bool:
    """Whether the child has exited, without reaping it: its group id then cannot be reused."""
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


def _spawn(port: int, home: Path | None, log: IO[bytes], ui: bool) -> subprocess.Popen:
    env = {name: value for name, value in os.environ.items() if name != "PREFECT_API_URL"}
    env.update(
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY="false",
        PREFECT_SERVER_UI_ENABLED=str(ui).lower(),  # off, like Prefect's own temporary server
        PREFECT_UI_API_URL=f"http://{LOOPBACK}:{port}/api",  # the page's API: this server
        PYTHONUNBUFFERED="1",  # the log is complete when a failed start quotes it
        **({"PREFECT_HOME": str(home)} if home is not None else {}),
    )
    args = [sys.executable, "-m", "prefect", "server", "start", "--host", LOOPBACK]
    args += ["--port", str(port), "--analytics-off"]
    if sys.platform.startswith("linux"):  # elsewhere only the SIGTERM handler and `finally` stop it
        args = [sys.executable, "-c", _PDEATHSIG_WRAPPER, str(os.getpid()), *args]
    return subprocess.Popen(
        args, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        process_group=0,  # its own group: Ctrl-C misses it, killpg gets all of it
    )  # fmt: skip


def _wait_healthy(process: subprocess.Popen, api_url: str, deadline: float) -> bool:
    """Poll /health until it answers 200 (True), the server exits or the deadline passes."""
    with httpx.Client(trust_env=False, timeout=2.0) as client:  # loopback: never via a proxy
        while not _exited(process) and time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{api_url}/health").status_code == 200:
                    return True
            time.sleep(0.2)
    return False


def _sigterm_to_exit(signum: int, frame: object) -> None:
    # `kill <pid>` or `timeout` then unwinds the stack: every `finally` runs, the server's too
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM during the block, then deliver them to the handlers of the time.

    A second Ctrl-C or `kill` (`timeout` sends two) would otherwise cut the server's stop short.
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
        except (KeyboardInterrupt, SystemExit) as error:  # a second signal, just before or after
            interrupted = error
    if interrupted is not None:
        raise interrupted


@contextlib.contextmanager
def temporary_server(
    home: Path | None = None, timeout: float = 120.0, ui: bool = False
) -> Iterator[str]:
    """Run `prefect server start` on a free loopback port for the block; yield its API URL.

    The server is a child in its own process group (Ctrl-C in a terminal reaches only the
    command line), stopped on leaving the block however that happens; on Linux the kernel also
    kills it when the calling thread's process dies (PR_SET_PDEATHSIG), even by SIGKILL. From
    the main thread, SIGTERM raises SystemExit(143) during the block so that it unwinds. Its
    database is that of `home`, by default the user's Prefect home, as Prefect's own temporary
    server's: runs stay visible to a later `prefect server start`. `ui` serves the UI too.
    Raises RuntimeError, with the end of its log, if it does not answer within `timeout` s.
    """
    previous = signal.getsignal(signal.SIGTERM)  # None: set outside Python, not restorable
    handle_sigterm = threading.current_thread() is threading.main_thread() and previous is not None
    if handle_sigterm:
        signal.signal(signal.SIGTERM, _sigterm_to_exit)
    process: subprocess.Popen | None = None
    # a file with no name: nothing is left behind, even after SIGKILL; a failed start quotes it
    log = tempfile.TemporaryFile(prefix="iris-sweep-server-")  # noqa: SIM115 - closed below
    try:
        deadline = time.monotonic() + timeout
        for attempt in range(1, PORT_ATTEMPTS + 1):
            # free now, bound seconds later: if taken meanwhile, the server exits; try another
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.bind((LOOPBACK, 0))
                port = probe.getsockname()[1]
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


def client_settings(api_url: str) -> contextlib.AbstractContextManager:
    """Return the settings of runs on a temporary server: its API; no heartbeats, none watches."""
    from prefect import settings

    # without heartbeats a run also ends sooner: it no longer waits for their thread (up to 1 s)
    updates = {settings.PREFECT_API_URL: api_url, settings.PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    return settings.temporary_settings(updates=updates)


def wait_until_recorded(flow_run_id: str | None, timeout: float = 15.0) -> bool:
    """Send the server what this process still holds, then wait until it is recorded.

    Task run states reach the server as events, recorded in batches: a temporary server stopped
    as soon as its run returns would cut that off, and Prefect's clients would retry it for
    minutes at exit. Waits until no task run of `flow_run_id` is in a state that is not final;
    returns whether that came within `timeout` s, all told (False, with a warning, if not).
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas import filters
    from prefect.client.schemas.objects import TERMINAL_STATES, StateType
    from prefect.events.worker import EventsWorker
    from prefect.logging import get_logger
    from prefect.logging.handlers import APILogWorker

    deadline = time.monotonic() + timeout
    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=max(deadline - time.monotonic(), 0.1))
    if flow_run_id is None:
        return True
    of_run = filters.FlowRunFilter(id=filters.FlowRunFilterId(any_=[flow_run_id]))
    types = filters.TaskRunFilterStateType(any_=[t for t in StateType if t not in TERMINAL_STATES])
    unfinished = filters.TaskRunFilter(state=filters.TaskRunFilterState(type=types))

    def wait() -> bool:
        quiet = 0
        with get_client(sync_client=True) as client:
            while quiet < 2:  # twice: an event sent may still be on its way to the recorder
                if time.monotonic() > deadline:
                    return False
                busy = client.read_task_runs(
                    flow_run_filter=of_run, task_run_filter=unfinished, limit=1
                )
                quiet = 0 if busy else quiet + 1
                time.sleep(0.2)
        return True

    try:
        return bounded("the Prefect API", wait, deadline - time.monotonic() + API_TIMEOUT_SECONDS)
    except Exception as error:  # the results are written; a lost record is only a warning
        get_logger("iris-sweep").warning("task runs not all recorded: %s", error)
        return False


def _api_url_source() -> tuple[str, str]:
    """Say where PREFECT_API_URL comes from (in Prefect's precedence) and how to drop it."""
    from dotenv import dotenv_values  # how pydantic-settings reads Prefect's .env
    from prefect.context import get_settings_context
    from prefect.settings import PREFECT_API_URL, sources
    from prefect.settings.models.api import APISettings

    if os.environ.get("PREFECT_API_URL"):
        return "the environment", "unset PREFECT_API_URL"
    toml = sources.PrefectTomlConfigSettingsSource
    pyproject = sources.PyprojectTomlConfigSettingsSource
    files = {  # how pydantic-settings reads each, and how to drop the setting from it
        ".env": (lambda: dotenv_values(".env").get("PREFECT_API_URL"), "PREFECT_API_URL"),
        "prefect.toml": (lambda: toml(APISettings)().get("url"), "[api] url"),
        "pyproject.toml": (lambda: pyproject(APISettings)().get("url"), "[tool.prefect.api] url"),
    }
    for name, (read, setting) in files.items():
        with contextlib.suppress(Exception):  # an unreadable file leaves its source unnamed
            if read():
                path = Path(name).resolve()
                return f"the file {path}", f"remove {setting} from {path}"
    profile = get_settings_context().profile
    if profile.settings.get(PREFECT_API_URL):
        return f"profile '{profile.name}'", "prefect config unset PREFECT_API_URL"
    return "the settings of this process", "prefect config unset PREFECT_API_URL"


def check_api(url: str) -> None:
    """Raise RuntimeError, in one line saying where the setting comes from, if `url` is down.

    Prefect Cloud is not checked: its URLs need the API key, which Prefect's client reports on.
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

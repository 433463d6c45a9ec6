"""The temporary Prefect server: it answers, records, stops, dies with its process; a set API."""

import contextlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.server import check_api, temporary_server, wait_until_recorded
from tasks.api import api_reachable

PROJECT_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 120.0  # `prefect server start` needs ~10 s on a busy 2-core machine
GONE_TIMEOUT = 10.0


def children(pid: int) -> list[int]:
    """Return the pids of the live children of `pid`, from /proc (all its threads)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return [child for child in found if alive(child)]


def alive(pid: int) -> bool:
    """Whether `pid` is a process that runs; a zombie, dead but not yet reaped, does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def server_children(port: int) -> list[int]:
    """Return the children of this test process that are `prefect server start` on `port`."""
    return [
        pid
        for pid in children(os.getpid())
        if "server" in cmdline(pid) and str(port) in cmdline(pid)
    ]


def port_of(api_url: str) -> int:
    return int(api_url.rsplit(":", 1)[1].split("/", 1)[0])


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def health(api_url: str) -> int:
    with urllib.request.urlopen(f"{api_url}/health", timeout=5) as response:
        return response.status


def wait_gone(pid: int, port: int, timeout: float = GONE_TIMEOUT) -> float:
    """Wait until `pid` is dead and nothing listens on `port`; return the seconds it took."""
    start = time.monotonic()
    while alive(pid) or port_open(port):
        if time.monotonic() - start > timeout:
            pytest.fail(f"server pid {pid} alive={alive(pid)} port {port} open={port_open(port)}")
        time.sleep(0.1)
    return time.monotonic() - start


def kill_if_alive(pid: int) -> None:
    """Stop a process this test started (directly or through its script) if a check failed."""
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _three_tasks():
    from prefect import flow, task
    from prefect.runtime import flow_run

    @task
    def square(x: int) -> int:
        return x * x

    @flow(name="three-tasks")
    def three_tasks() -> str:
        square.map([1, 2, 3]).wait()
        return flow_run.get_id()

    return three_tasks


def _task_run_states(flow_run_id: str) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return [run.state_type.value for run in runs]


@pytest.mark.server
def test_server_answers_then_stops_with_no_process_left(prefect_home: Path) -> None:
    """A temporary server answers in a process group of its own, on the database of its home;
    after its block no process is left."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_server(home=prefect_home, timeout=START_TIMEOUT) as api_url:
        port = port_of(api_url)
        assert api_url == f"http://127.0.0.1:{port}/api"
        assert health(api_url) == 200
        assert api_reachable(api_url)
        check_api(api_url)  # answers: no error
        [server] = server_children(port)
        try:
            assert os.getpgid(server) == server  # its own group: Ctrl-C does not reach it
            # PR_SET_PDEATHSIG reaches only the server process: it must run uvicorn in-process.
            assert children(server) == []
            with (
                temporary_settings(updates={PREFECT_API_URL: api_url}),
                get_client(sync_client=True) as client,
            ):
                client.create_flow_from_name("stored-in-home")
            with contextlib.closing(sqlite3.connect(prefect_home / "prefect.db")) as database:
                stored = [row[0] for row in database.execute("select name from flow")]
            assert "stored-in-home" in stored
        except BaseException:
            kill_if_alive(server)
            raise
    assert not alive(server)
    assert not port_open(port)
    with pytest.raises(ProcessLookupError, match="No such process"):
        os.kill(server, 0)  # reaped, not a zombie


@pytest.mark.server
def test_once_the_wait_for_records_returns_every_task_run_is_recorded_final(prefect_harness):
    """Once the wait for records returns, the server holds every task run of the flow run, each
    in a final state."""
    flow_run_id = _three_tasks()()
    assert wait_until_recorded(flow_run_id) is True
    assert _task_run_states(flow_run_id) == ["COMPLETED"] * 3


@pytest.mark.server
def test_failed_start_says_why_and_leaves_no_process(tmp_path: Path) -> None:
    """A server that does not answer in time is an error quoting its log; nothing is left."""
    expected = r"did not answer on http://127\.0\.0\.1:\d+/api within 0\.5 s; its log ends"
    before = set(children(os.getpid()))  # other tests' servers (the e2e session's) may run
    with (
        pytest.raises(RuntimeError, match=expected),
        temporary_server(home=tmp_path / "home", timeout=0.5),
    ):
        pytest.fail("the server cannot answer within 0.5 s")
    started = set(children(os.getpid())) - before
    assert [pid for pid in started if "server" in cmdline(pid)] == []


SCRIPT = """\
import os, signal, sys, time
from pathlib import Path

from cli.server import temporary_server

# As in a terminal: a shell running this in the background may have left SIGINT ignored.
signal.signal(signal.SIGINT, signal.default_int_handler)
server = None
try:
    with temporary_server(home=Path(sys.argv[1]), timeout=float(sys.argv[2])) as api_url:
        [server] = [
            int(pid)
            for task in Path(f"/proc/{os.getpid()}/task").iterdir()
            for pid in (task / "children").read_text().split()
        ]
        print(server, api_url, flush=True)
        time.sleep(600)
finally:
    # Stopped and reaped by the block, or only by the kernel once this process is gone?
    exists = server is not None and os.path.exists(f"/proc/{server}")
    print("after the block the server exists:", exists, flush=True)
"""


@contextlib.contextmanager
def script_with_server(
    tmp_path: Path, home: Path
) -> Iterator[tuple[subprocess.Popen, int, str, Path]]:
    """Run SCRIPT; yield it, its server's pid, the API URL and its output file."""
    script = tmp_path / "hold_server.py"
    script.write_text(textwrap.dedent(SCRIPT))
    out = tmp_path / "script.out"
    env = {name: value for name, value in os.environ.items() if name != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(home)  # never the user's ~/.prefect
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), env.get("PYTHONPATH", "")])
    with open(out, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(script), str(home), str(START_TIMEOUT)],
            env=env,
            cwd=PROJECT_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = None
    try:
        deadline = time.monotonic() + START_TIMEOUT + 10
        while not out.read_text().strip():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the script did not start its server:\n{out.read_text()}")
            time.sleep(0.2)
        pid, api_url = out.read_text().splitlines()[0].split()
        server = int(pid)
        assert "server" in cmdline(server) and str(port_of(api_url)) in cmdline(server)
        assert health(api_url) == 200
        yield process, server, api_url, out
    finally:
        kill_if_alive(process.pid)
        process.wait()
        if server is not None:
            kill_if_alive(server)


@pytest.mark.server
@pytest.mark.subprocess
def test_sigkill_of_the_process_alone_kills_its_server(tmp_path: Path, prefect_home: Path) -> None:
    """SIGKILL of the process that started the server, its pid only, kills the server too."""
    with script_with_server(tmp_path, prefect_home) as (process, server, api_url, _):
        process.send_signal(signal.SIGKILL)  # the pid only, as the OOM killer does
        assert process.wait(timeout=10) == -signal.SIGKILL
        wait_gone(server, port_of(api_url))


@pytest.mark.server
@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("signum", "returncode"),
    [(signal.SIGTERM, 143), (signal.SIGINT, -signal.SIGINT)],
    ids=["SIGTERM", "SIGINT"],
)
def test_sigterm_or_ctrl_c_of_the_process_alone_stops_its_server_first(
    tmp_path: Path, prefect_home: Path, signum: signal.Signals, returncode: int
) -> None:
    """SIGTERM or SIGINT of the process alone, twice, stops and reaps its server before it exits."""
    with script_with_server(tmp_path, prefect_home) as (process, server, api_url, out):
        # The pid only, as `timeout` or `kill <pid>` do; then again while the server stops, as an
        # impatient Ctrl-C does: the second must not cut the stop short. (Sent at once, the two
        # would merge into one pending signal.)
        process.send_signal(signum)
        time.sleep(0.1)
        process.send_signal(signum)
        assert process.wait(timeout=GONE_TIMEOUT + 5) == returncode, out.read_text()
        # Stopped and reaped in the script's `finally`, not by the kernel after it exited.
        assert "after the block the server exists: False" in out.read_text(), out.read_text()
        wait_gone(server, port_of(api_url), timeout=2)


ONE_LINE = (
    r"^iris-sweep: the Prefect API at http://127\.0\.0\.1:{port}/api \(PREFECT_API_URL, from "
    r"{where}\) does not answer; start that server \(prefect server start\) or drop the setting "
    r"to use a temporary one: {drop}$"
)


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the probe is


def test_check_api_names_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A set API that does not answer is one line naming the environment as its source."""
    port = closed_port()
    url = f"http://127.0.0.1:{port}/api"
    monkeypatch.setenv("PREFECT_API_URL", url)
    expected = ONE_LINE.format(port=port, where="the environment", drop="unset PREFECT_API_URL")
    assert not api_reachable(url)
    with pytest.raises(RuntimeError, match=expected) as raised:
        check_api(url)
    assert "\n" not in str(raised.value)


@pytest.mark.subprocess
def test_check_api_names_the_active_profile(tmp_path: Path) -> None:
    """A set API from a profile that does not answer is one line naming the profile."""
    # A fresh process: Prefect reads the profile once, when it is first imported.
    port = closed_port()
    home = tmp_path / "home"
    home.mkdir()
    (home / "profiles.toml").write_text(
        f'active = "work"\n[profiles.work]\nPREFECT_API_URL = "http://127.0.0.1:{port}/api"\n'
    )
    env = {name: value for name, value in os.environ.items() if name != "PREFECT_API_URL"}
    env.pop("PREFECT_PROFILE", None)
    env["PREFECT_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), env.get("PYTHONPATH", "")])
    code = (
        "from prefect.settings import get_current_settings\n"
        "from cli.server import check_api\n"
        "try:\n"
        "    check_api(get_current_settings().api.url)\n"
        "except RuntimeError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,  # no project prefect.toml or .env here to name instead
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    expected = ONE_LINE.format(
        port=port, where="profile 'work'", drop="prefect config unset PREFECT_API_URL"
    )
    assert result.stdout.count("\n") == 1, result.stdout  # one line, its print's newline
    assert re.match(expected, result.stdout.rstrip("\n")), result.stdout


def test_the_wait_for_records_gives_up_on_an_api_that_hangs(monkeypatch) -> None:
    """When the API accepts connections and never answers, the wait for records gives up
    within its bound, with False."""
    import time

    from prefect.settings import PREFECT_API_URL, temporary_settings

    import cli.server

    monkeypatch.setattr(cli.server, "API_TIMEOUT_SECONDS", 1.0)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # connections wait in its backlog
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/api"
        started = time.monotonic()
        with temporary_settings(updates={PREFECT_API_URL: url}):
            assert wait_until_recorded("00000000-0000-0000-0000-000000000000", 0.5) is False
    assert time.monotonic() - started < 10

"""Signals to the command line: Ctrl-C stops training promptly and keeps what was written; no
signal, not even SIGKILL of its pid alone, leaves its temporary Prefect server behind."""

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from irismodel import store
from irismodel.store import layout

pytestmark = pytest.mark.subprocess  # the command line, in a process of its own

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# ~2 s a shard here, 24 shards: a run that is surely mid-sweep when a signal comes
LONG_SWEEP = ["--hidden-dims", "8..13", "--optimizers", "sgd", "--split-seeds", "0",
              "--seeds", "0..63", "--epochs", "20000", "--shard-size", "16",
              "--device", "cpu"]  # fmt: skip


def _start(tmp_path: Path, home: Path, output: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # its own server
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
    )
    log = open(tmp_path / "cli.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "cli.sweep", *LONG_SWEEP, "--output-dir", str(output)],
        cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def _descendants(pid: int) -> set[int]:
    found, stack = set(), [pid]
    while stack:
        current = stack.pop()
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    children = [int(p) for p in handle.read().split()]
                found.update(children)
                stack.extend(children)
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def _wait_for(condition, timeout: float, what: str, process: subprocess.Popen, tmp_path: Path):
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, (tmp_path / "cli.log").read_text()[-3000:]
        assert time.monotonic() < deadline, f"{what} not within {timeout} s"
        time.sleep(0.05)


def _cleanup(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@pytest.mark.server
def test_ctrl_c_stops_training_promptly_keeps_the_shards_and_exits_130(tmp_path, prefect_home):
    """SIGINT mid-sweep: training stops within seconds, written shards stay for a resume, the
    run is not published, the exit status is 130, and no process is left behind."""
    output = tmp_path / "out"
    process = _start(tmp_path, prefect_home, output)
    try:
        staged = lambda: list((output / layout.STAGING).glob("*/*.parquet"))  # noqa: E731
        _wait_for(lambda: len(staged()) >= 1, 240, "a written shard", process, tmp_path)
        helpers = _descendants(process.pid)
        sent = time.monotonic()
        os.kill(process.pid, signal.SIGINT)
        code = process.wait(timeout=60)
        stopped_after = time.monotonic() - sent
    finally:
        _cleanup(process)
    log = (tmp_path / "cli.log").read_text()
    assert code == 130, log[-3000:]
    assert stopped_after < 30, f"took {stopped_after:.1f} s to stop"  # not 24 shards' worth
    assert "iris-sweep: interrupted." in log and "iris-sweep --resume " in log
    assert "terminate called" not in log
    assert store.list_result_files(str(output)) == []  # nothing published
    kept = staged()
    assert 1 <= len(kept) < 24
    assert not [pid for pid in helpers if _alive(pid)], "a child process outlived the command"


@pytest.mark.server
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killing_the_command_line_alone_leaves_no_server(tmp_path, prefect_home, sig):
    """SIGTERM or SIGKILL of the command line's pid only (as `timeout` or the OOM killer send
    it) takes its temporary Prefect server down too; SIGTERM says how to resume the run."""
    output = tmp_path / "out"
    process = _start(tmp_path, prefect_home, output)
    try:
        parts = lambda: list((output / layout.STAGING).glob("*/*.parquet"))  # noqa: E731
        _wait_for(parts, 240, "the run", process, tmp_path)
        children = _descendants(process.pid)
        assert children, "the command line should have started its server"
        os.kill(process.pid, sig)  # the pid only, not its group
        code = process.wait(timeout=60)
        deadline = time.monotonic() + 20
        while [pid for pid in children if _alive(pid)] and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [pid for pid in children if _alive(pid)]
    finally:
        _cleanup(process)
    assert code == (143 if sig == signal.SIGTERM else -signal.SIGKILL)
    assert left == [], f"still running after the command line died: {left}"
    if sig == signal.SIGTERM:
        log = (tmp_path / "cli.log").read_text()
        assert re.search(r"iris-sweep: terminated\. .*`iris-sweep --resume [0-9a-f-]+`", log), log[
            -2000:
        ]


def test_ctrl_c_while_a_store_that_never_answers_is_checked_exits_at_once(tmp_path):
    """Ctrl-C while the output location is checked, on a store that accepts connections and
    never answers, ends the command line within seconds: exit 130, one line, nothing started."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted, held = threading.Event(), []

    def hold() -> None:  # accept and keep every connection, never answer
        with contextlib.suppress(OSError):
            while True:
                held.append(listener.accept()[0])
                accepted.set()

    threading.Thread(target=hold, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")])),
        IRIS_SWEEP_LOCATION_TIMEOUT="300",  # an exit within seconds is not this bound
        AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_EC2_METADATA_DISABLED="true",
    )  # fmt: skip
    location = f"s3://bucket/runs?endpoint_override=127.0.0.1:{port}&scheme=http"
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.sweep", "--seeds", "0", "--epochs", "5",
         "--output-dir", location],
        cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert accepted.wait(120), "the command line never reached the store"
        sent = time.monotonic()
        os.kill(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=60)
        stopped_after = time.monotonic() - sent
    finally:
        _cleanup(process)
        listener.close()
        for connection in held:
            connection.close()
    assert process.returncode == 130, err[-3000:]
    assert stopped_after < 10, f"took {stopped_after:.1f} s to stop"
    assert err.strip().splitlines() == ["iris-sweep: interrupted; nothing was started"], err
    assert not (tmp_path / "prefect-home").exists() or not list(
        (tmp_path / "prefect-home").rglob("*.db")
    )


# During a flow run Prefect's SIGTERM handler raises in the main thread wherever it is; raised
# in a finalizer (or in importlib's bookkeeping) it is dropped (or leaves the import lock held).
# The command line's handler for the run raises nothing and still stops the sweep.
SIGTERM_IN_A_FINALIZER = """
import os, signal, sys
from cli.signals import TERMINATED, stop_on_sigterm
from irismodel.engine import stop_requested

def raising(signum, frame):
    raise RuntimeError("raised by the SIGTERM handler")

class Finalized:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)  # its handler runs in here
        sum(range(1000))

signal.signal(signal.SIGTERM, raising)  # as Prefect's flow engine does
if sys.argv[1] == "ours":
    stop_on_sigterm()  # as the command line's hook does once the run is running
Finalized()  # gone at once
print(TERMINATED.wait(3), stop_requested())
"""


@pytest.mark.parametrize("handler", ["prefect", "ours"])
def test_sigterm_during_the_run_raises_nothing_and_stops_the_sweep(handler):
    """SIGTERM landing in a finalizer: Prefect's handler's exception is dropped (the sweep would
    go on); the command line's raises nothing, asks training to stop and notes the signal."""
    done = subprocess.run(
        [sys.executable, "-c", SIGTERM_IN_A_FINALIZER, handler],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    if handler == "prefect":
        assert "RuntimeError: raised by the SIGTERM handler" in done.stderr  # dropped
        assert done.stdout.split() == ["False", "False"]
    else:
        assert "Exception ignored" not in done.stderr, done.stderr[-3000:]
        assert done.stdout.split() == ["True", "True"]

"""Helpers of the end-to-end tests: ports, process groups, health waits, workers, Dask, webhooks."""

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the environment's console scripts: prefect, dask
LOOPBACK = "127.0.0.1"

# A sweep of seconds: 2 hidden dims x 2 rules x 2 seeds on one split, 50 epochs.
TINY = {
    "hidden_dims": [8, 9],
    "optimizers": ["sgd", "manual"],
    "split_seeds": "0",
    "seeds": [0, 1],
    "epochs": 50,
}


def free_port() -> int:
    """Return a TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def project_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return an environment for child processes: this one, the project importable, offline.

    The project root goes first on PYTHONPATH, which is harmless where the project is also
    installed (`pip install -e .` points at the same folder). IRIS_SWEEP_DASK_ADDRESS and
    PREFECT_API_URL are dropped so a child only talks to what `extra` names.
    """
    dropped = ("IRIS_SWEEP_DASK_ADDRESS", "PREFECT_API_URL")
    env = {name: value for name, value in os.environ.items() if name not in dropped}
    paths = [str(PROJECT_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def prefect_env(home: Path, api_url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return a child environment bound to one Prefect home and one server."""
    return project_env({"PREFECT_HOME": str(home), "PREFECT_API_URL": api_url, **(extra or {})})


def start_process(
    args: Sequence[str], env: Mapping[str, str], log_path: Path, cwd: Path = PROJECT_ROOT
) -> subprocess.Popen:
    """Start `args` in a new process group (session), its output going to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(args),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stopping it stops all its children
        )


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)  # the group id is the leader's pid (start_new_session)


def stop_process(process: subprocess.Popen, grace_seconds: float = 10.0) -> None:
    """Stop a process started by `start_process` and every process in its group.

    SIGTERM to the group, then SIGKILL to whatever is left after `grace_seconds`. The group
    is signalled even if the leader already exited, so orphaned children go too.
    """
    _signal_group(process, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_seconds)
    _signal_group(process, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_seconds)


@contextlib.contextmanager
def running(
    args: Sequence[str], env: Mapping[str, str], log_path: Path, cwd: Path = PROJECT_ROOT
) -> Iterator[subprocess.Popen]:
    """Run `args` for the duration of the block; stop its process group after, also on error."""
    process = start_process(args, env, log_path, cwd)
    try:
        yield process
    finally:
        stop_process(process)


def log_tail(log_path: Path, chars: int = 4000) -> str:
    """Return the end of a process log, for failure messages."""
    try:
        return log_path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def wait_until(
    ready: Callable[[], bool],
    timeout: float,
    what: str,
    process: subprocess.Popen | None = None,
    log_path: Path | None = None,
    interval: float = 0.25,
) -> None:
    """Poll `ready()` until it is true; fail early if `process` exits, late after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"{what}: the process exited with code {process.returncode} before it was ready\n"
                + (log_tail(log_path) if log_path else "")
            )
        time.sleep(interval)
    raise TimeoutError(
        f"{what}: not ready after {timeout:.0f}s\n" + (log_tail(log_path) if log_path else "")
    )


def port_open(port: int) -> bool:
    """Return whether something accepts TCP connections on loopback `port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        return probe.connect_ex((LOOPBACK, port)) == 0


def http_ok(url: str) -> bool:
    """Return whether GET `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def prefect_server(home: Path, timeout: float = 90.0) -> Iterator[str]:
    """Run `prefect server start` on a free loopback port with its own home; yield its API URL.

    The server keeps its SQLite database under `home`; it is stopped after the block.
    """
    port = free_port()
    api_url = f"http://{LOOPBACK}:{port}/api"
    env = prefect_env(home, api_url)
    log_path = home / "server.log"
    args = [str(BIN / "prefect"), "server", "start", "--host", LOOPBACK, "--port", str(port)]
    with running(args, env, log_path) as server:
        health = f"{api_url}/health"
        wait_until(lambda: http_ok(health), timeout, "prefect server", server, log_path)
        yield api_url


class Worker:
    """A `prefect worker start` process of a pool, which can be killed and started again."""

    def __init__(self, pool: str, env: Mapping[str, str], folder: Path) -> None:
        self.args = [str(BIN / "prefect"), "worker", "start", "--pool", pool]
        self.env = dict(env)
        self.folder = folder  # its working folder: unrelated to the project, on purpose
        self.log_path = folder / "worker.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start the worker (it polls the pool from then on)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = start_process(self.args, self.env, self.log_path, cwd=self.folder)

    def flow_run_pids(self) -> list[int]:
        """Return the pids of every process under the worker (its flow runs and theirs)."""
        if self.process is None:
            return []
        with contextlib.suppress(psutil.NoSuchProcess):
            return [child.pid for child in psutil.Process(self.process.pid).children(True)]
        return []

    def kill(self) -> list[int]:
        """SIGKILL the worker and every process under it, as a lost machine would; return them.

        Flow runs start in sessions of their own, so the worker's process group does not hold
        them: they are found as the worker's descendants first.
        """
        assert self.process is not None
        victims = [self.process.pid, *self.flow_run_pids()]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        gone = lambda: not any(psutil.pid_exists(pid) and _alive(pid) for pid in victims)  # noqa: E731
        wait_until(gone, 10, "killed processes")
        self.process = None
        return victims

    def stop(self) -> None:
        """Stop the worker and what it runs, if it is running."""
        if self.process is not None:
            pids = self.flow_run_pids()
            stop_process(self.process)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.process = None


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Webhook:
    """A loopback HTTP server, in a thread, that records the JSON body of every POST."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.received = threading.Condition()
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with webhook.received:
                    webhook.bodies.append(json.loads(body))
                    webhook.received.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.url = f"http://{LOOPBACK}:{self.server.server_address[1]}/hook"

    def wait_for(self, wanted: Callable[[dict], bool], timeout: float = 60.0) -> dict:
        """Return the first body for which `wanted` is true; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self.received:
            while True:
                for body in self.bodies:
                    if wanted(body):
                        return body
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no such POST after {timeout:.0f}s; got {self.bodies}")
                self.received.wait(left)


def run_cli(
    args: Sequence[str], env: Mapping[str, str], timeout: float = 120.0, cwd: Path = PROJECT_ROOT
) -> subprocess.CompletedProcess:
    """Run a command to its end in its own process group; raise with its output if it fails."""
    process = subprocess.Popen(
        list(args),
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as error:
        stop_process(process)
        output, _ = process.communicate()
        raise TimeoutError(
            f"{' '.join(args)}: still running after {timeout:.0f}s\n{output}"
        ) from error
    finally:
        stop_process(process, grace_seconds=1)  # anything it left running in its group
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited with {process.returncode}\n{output}")
    return subprocess.CompletedProcess(list(args), process.returncode, output, None)


def notify_here(api_url: str, *args: str) -> str:
    """Run the notification set-up (`cli.notify`) in this process against the server at
    `api_url`, as `python -m cli.notify ARGS` would; return what it printed."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from cli.notify import main

    printed = io.StringIO()
    with (
        temporary_settings(updates={PREFECT_API_URL: api_url}),
        contextlib.redirect_stdout(printed),
    ):
        code = main(list(args))
    assert code == 0, printed.getvalue()
    return printed.getvalue()


@dataclass(frozen=True)
class DaskCluster:
    """A `dask scheduler` and its workers, started as processes of this test."""

    address: str
    scheduler_port: int
    scheduler: subprocess.Popen
    n_workers: int
    folder: Path
    workers: tuple[subprocess.Popen, ...] = ()

    def wait_for_workers(self, n_workers: int | None = None) -> dict[str, int]:
        """Wait until every worker (or `n_workers`) has joined; return address -> pid of each.

        The pids are those of the processes that run tasks (not their nannies).
        """
        from distributed import Client

        log_path = self.folder / "scheduler.log"
        ready = lambda: port_open(self.scheduler_port)  # noqa: E731
        wait_until(ready, 60, "dask scheduler", self.scheduler, log_path)
        with Client(self.address, timeout=60) as client:
            client.wait_for_workers(self.n_workers if n_workers is None else n_workers, timeout=120)
            return client.run(os.getpid)


def dask_worker_args(address: str, folder: Path, name: str) -> list[str]:
    """Return the command line of one one-thread `dask worker` of the scheduler at `address`."""
    worker = [str(BIN / "dask"), "worker", address, "--nthreads", "1", "--host", LOOPBACK]
    worker += ["--no-dashboard", "--local-directory", str(folder / "scratch")]
    return worker + ["--preload", "flows.iris_sweep", "--name", name]


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL a process started by `start_process` and its whole group; wait for the leader."""
    _signal_group(process, signal.SIGKILL)
    process.wait(timeout=30)


@contextlib.contextmanager
def dask_cluster(folder: Path, n_workers: int = 2) -> Iterator[DaskCluster]:
    """Start `dask scheduler` and one-thread `dask worker`s on loopback; stop them after.

    The workers import the project's code (from its folder, on PYTHONPATH) but get no data
    and no Prefect API URL: what a task needs must come with it. `--preload flows.iris_sweep`
    imports the project as a worker starts, so the first task does not wait for torch and
    Prefect.
    """
    port = free_port()
    address = f"tcp://{LOOPBACK}:{port}"
    env = dask_env(folder)
    dask = str(BIN / "dask")
    scheduler = [dask, "scheduler", "--host", LOOPBACK, "--port", str(port), "--no-dashboard"]
    with contextlib.ExitStack() as stack:
        scheduler_process = stack.enter_context(running(scheduler, env, folder / "scheduler.log"))
        workers = tuple(
            stack.enter_context(
                running(
                    dask_worker_args(address, folder, f"worker-{i}"),
                    env,
                    folder / f"worker-{i}.log",
                )
            )
            for i in range(n_workers)
        )
        yield DaskCluster(address, port, scheduler_process, n_workers, folder, workers)


def dask_env(folder: Path) -> dict[str, str]:
    """Return the environment of a cluster's processes: the project, no Prefect API URL."""
    return project_env({"PREFECT_HOME": str(folder / "prefect-home")})


ROW_KEY = ["hidden_dim", "optimizer", "seed"]


def assert_same_training(rows: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Assert two runs' rows hold the same models, loss curves and metrics, bit for bit."""
    rows = rows.sort_values(ROW_KEY).reset_index(drop=True)
    expected = expected.sort_values(ROW_KEY).reset_index(drop=True)
    pd.testing.assert_frame_equal(rows[ROW_KEY], expected[ROW_KEY])
    for curve, expected_curve in zip(rows["loss_curve"], expected["loss_curve"], strict=True):
        np.testing.assert_array_equal(curve, expected_curve)
    metrics = [
        c for c in expected.columns if c.startswith(("train_", "test_")) and c != "train_seconds"
    ]
    metrics.append("final_train_loss")
    pd.testing.assert_frame_equal(rows[metrics], expected[metrics], check_exact=True)


def worker_pids(rows: pd.DataFrame) -> set[int]:
    """Return the pids of the `worker` column (`host:pid`), checking the host is this one."""
    hosts, pids = zip(*(worker.rsplit(":", 1) for worker in rows["worker"]), strict=True)
    assert set(hosts) == {socket.gethostname()}, hosts
    return {int(pid) for pid in pids}

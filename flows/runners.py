"""The task runner a flow uses: a Dask cluster when IRIS_SWEEP_DASK_ADDRESS is set, else threads."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from irismodel.store.locations import within_time

DASK_ADDRESS_VARIABLE = "IRIS_SWEEP_DASK_ADDRESS"
NO_WORKER_VARIABLE = "IRIS_SWEEP_DASK_NO_WORKER_TIMEOUT"
NO_WORKER_DEFAULT_SECONDS = 60.0


class ClusterLost(RuntimeError):
    """The Dask cluster running the shards has had no workers for longer than the bound."""


def task_runner_from_env() -> TaskRunner:
    """Return `DaskTaskRunner(address=...)` if the variable names a scheduler, else a thread pool.

    The thread pool has one thread per core: training is compute-bound, so more threads only
    contend for the same cores.
    """
    address = os.environ.get(DASK_ADDRESS_VARIABLE, "").strip()
    if address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=address)
    return ThreadPoolTaskRunner(max_workers=max(1, os.cpu_count() or 1))


def no_worker_timeout() -> float:
    """Return how long a Dask cluster may have no workers before the run fails, in seconds."""
    text = os.environ.get(NO_WORKER_VARIABLE, "").strip()
    if not text:
        return NO_WORKER_DEFAULT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(
            f"{NO_WORKER_VARIABLE}: expected a positive number of seconds, got {text!r}"
        )
    return seconds


def cluster_watch(runner: TaskRunner) -> Callable[[], None] | None:
    """Return a check to call while waiting on shards, or None where the runner needs none.

    On a Dask cluster the check raises `ClusterLost` once the scheduler has reported no
    workers (or not answered) for `no_worker_timeout()` seconds: its tasks would otherwise wait
    for a worker forever, without a word. Threads of this process cannot all disappear.
    """
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:  # pragma: no cover - a dependency; threads need no watch
        return None
    if not isinstance(runner, DaskTaskRunner):
        return None
    bound = no_worker_timeout()
    client = runner.client
    address = getattr(client.scheduler, "address", None) or runner.address
    since: float | None = None

    def check() -> None:
        nonlocal since
        try:
            workers = len(within_time("the Dask scheduler", client.nthreads, min(bound, 10.0)))
        except Exception:  # a scheduler that does not answer runs nothing either
            workers = 0
        now = time.monotonic()
        if workers:
            since = None
            return
        since = now if since is None else since
        if now - since >= bound:
            raise ClusterLost(
                f"the Dask cluster at {address} has had no workers for {bound:g} s "
                f"({NO_WORKER_VARIABLE})"
            )

    return check

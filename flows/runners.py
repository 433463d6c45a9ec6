"""The task runner a flow uses: a Dask cluster when IRIS_SWEEP_DASK_ADDRESS is set, else threads."""

from __future__ import annotations

import os

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

DASK_ADDRESS_VARIABLE = "IRIS_SWEEP_DASK_ADDRESS"


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

"""The iris-sweep flow on a real Dask cluster (scheduler and two workers on loopback)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd
import pytest

from flows.runners import DASK_ADDRESS_VARIABLE
from irismodel.results import read_results

from . import servers

pytestmark = pytest.mark.e2e

TINY = {"hidden_dims": [8, 9], "seeds": [0, 1], "epochs": 50}
TINY_ARGS = ["--hidden-dims", "8", "9", "--seeds", "0", "1", "--epochs", "50"]


def run_locally(api_url: str, output_dir: Path) -> pd.DataFrame:
    """Run the flow in this process, on its local thread runner; return its rows."""
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.iris_sweep import iris_sweep

    assert isinstance(iris_sweep.task_runner, ThreadPoolTaskRunner)  # the variable is unset
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        iris_sweep(**TINY, output_dir=str(output_dir))
    return read_results(str(output_dir))


def run_command_line(env: dict[str, str], output_dir: Path) -> pd.DataFrame:
    """Run the iris-sweep command line in a subprocess with tiny parameters; return its rows."""
    command = [sys.executable, "-m", "flows.iris_sweep", *TINY_ARGS]
    servers.run_cli([*command, "--output-dir", str(output_dir)], env, timeout=150)
    return read_results(str(output_dir))


def test_training_tasks_run_on_dask_workers_and_match_a_local_run(
    prefect_server, tmp_path: Path
) -> None:
    """With IRIS_SWEEP_DASK_ADDRESS set, training runs in the Dask workers, rows as a local run.

    Same seeds on CPU give the same loss curves and metrics, bit for bit, whether a
    configuration trained in the flow's own threads or in a Dask worker process.
    """
    with servers.dask_cluster(tmp_path / "dask") as cluster:
        # While the cluster starts: the same sweep on the local thread runner, in this process.
        local = run_locally(prefect_server.api_url, tmp_path / "local")
        pids = cluster.wait_for_workers()
        env = prefect_server.env(**{DASK_ADDRESS_VARIABLE: cluster.address})
        on_dask = run_command_line(env, tmp_path / "on-dask")

    assert len(on_dask) == 2 * 2 * 2  # hidden_dims x optimizers (sgd, manual) x seeds
    assert servers.worker_pids(on_dask) <= set(pids.values()), (on_dask["worker"], pids)
    assert os.getpid() not in servers.worker_pids(on_dask)
    assert servers.worker_pids(local) == {os.getpid()}
    servers.assert_same_training(on_dask, local)

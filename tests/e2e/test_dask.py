"""The iris-sweep flow on a real Dask cluster (scheduler and two workers on loopback)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from irismodel.results import META_WRITER, read_results
from irismodel.sweep import ShardSummary

from . import servers

pytestmark = pytest.mark.e2e

TINY = {
    "hidden_dims": [8, 9],
    "optimizers": ["sgd", "manual"],
    "split_seeds": "0",
    "seeds": [0, 1],
    "epochs": 50,
}


def run_locally(api_url: str, output_dir: Path) -> pd.DataFrame:
    """Run the flow in this process, on its local thread runner; return its rows."""
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.iris_sweep import iris_sweep

    assert isinstance(iris_sweep.task_runner, ThreadPoolTaskRunner)  # the variable is unset
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        iris_sweep(**TINY, output_dir=str(output_dir))
    return read_results(str(output_dir))


def run_on_dask(api_url: str, address: str, output_dir: Path, received: list) -> str:
    """Run the flow in this process with its shard tasks on the Dask cluster at `address`.

    `received` collects what the flow got back from its shard tasks.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect_dask import DaskTaskRunner

    import flows.iris_sweep as module

    real = module.train_all

    def recording(*args, **kwargs):
        results = real(*args, **kwargs)
        received.append(results)
        return results

    module.train_all = recording
    try:
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            runner = DaskTaskRunner(address=address)
            return module.iris_sweep.with_options(task_runner=runner)(
                **TINY, output_dir=str(output_dir)
            )
    finally:
        module.train_all = real


def test_shards_train_and_write_on_dask_workers_and_match_a_local_run(
    prefect_server, tmp_path: Path
) -> None:
    """On Dask, the workers train and write every shard; the flow receives no loss curve.

    Same seeds on CPU give the same loss curves and metrics, bit for bit, whether a shard
    trained in the flow's own threads or in a Dask worker process. Each part file's writer (its
    metadata) and its rows' `worker` are a Dask worker process; what came back to the flow
    from the shard tasks is a few counts per shard, no array.
    """
    with servers.dask_cluster(tmp_path / "dask") as cluster:
        # While the cluster starts: the same sweep on the local thread runner, in this process.
        local = run_locally(prefect_server.api_url, tmp_path / "local")
        pids = set(cluster.wait_for_workers().values())
        received: list = []
        path = run_on_dask(prefect_server.api_url, cluster.address, tmp_path / "on-dask", received)
    on_dask = read_results(path)

    assert len(on_dask) == 2 * 2 * 2  # hidden_dims x optimizers (sgd, manual) x seeds
    assert servers.worker_pids(on_dask) <= pids, (on_dask["worker"], pids)
    assert os.getpid() not in servers.worker_pids(on_dask)
    writers = set()
    for part in Path(path).glob("*.parquet"):
        writer = pq.read_schema(part).metadata[META_WRITER].decode()
        writers.add(int(writer.rsplit(":", 1)[1]))
    assert writers and writers <= pids
    (results,) = received
    assert len(results.summaries) == 4 and not results.failed
    for summary in results.summaries:
        assert isinstance(summary, ShardSummary)
        assert all(isinstance(v, str | int | float | bool) for v in vars(summary).values())
        assert len(pickle.dumps(summary)) < 1000
    assert servers.worker_pids(local) == {os.getpid()}
    servers.assert_same_training(on_dask, local)

"""The iris-sweep flow on a real Dask cluster (scheduler and two workers on loopback)."""

import os
import pickle
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from irismodel.store import read_results
from irismodel.store.layout import META_WRITER
from irismodel.sweep import ShardSummary

from . import servers

pytestmark = [pytest.mark.e2e, pytest.mark.server, pytest.mark.subprocess]

TINY = servers.TINY


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

    `received` collects what the flow got back from its shard tasks, and what failed.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect_dask import DaskTaskRunner

    import flows.iris_sweep as module

    real = module.wait_for_shards

    def recording(futures, *args, **kwargs):
        failed, stopped = real(futures, *args, **kwargs)
        received.append(([future.result() for future in futures], failed))
        return failed, stopped

    module.wait_for_shards = recording
    try:
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            runner = DaskTaskRunner(address=address)
            return module.iris_sweep.with_options(task_runner=runner)(
                **TINY, output_dir=str(output_dir)
            )
    finally:
        module.wait_for_shards = real


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[servers.DaskCluster]:
    """A Dask scheduler and two one-thread workers for this module, started, not waited for.

    The last test kills its workers: the tests run in the order of this file.
    """
    with servers.dask_cluster(tmp_path_factory.mktemp("dask")) as started:
        yield started


def test_shards_train_and_write_on_dask_workers_and_match_a_local_run(
    prefect_server, cluster: servers.DaskCluster, tmp_path: Path
) -> None:
    """On Dask, the workers train and write every shard; the flow receives no loss curve.

    Same seeds on CPU give the same loss curves and metrics, bit for bit, whether a shard
    trained in the flow's own threads or in a Dask worker process. Each part file's writer (its
    metadata) and its rows' `worker` are a Dask worker process; what came back to the flow
    from the shard tasks is a few counts per shard, no array.
    """
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
    ((summaries, failed),) = received
    assert len(summaries) == 4 and not failed
    for summary in summaries:
        assert isinstance(summary, ShardSummary)
        assert all(isinstance(v, str | int | float | bool) for v in vars(summary).values())
        assert len(pickle.dumps(summary)) < 1000
    assert servers.worker_pids(local) == {os.getpid()}
    servers.assert_same_training(on_dask, local)


# 4 shards of ~2 s each here: two one-thread workers are surely mid-sweep after the first part
SLOW = ["--hidden-dims", "8", "9", "--optimizers", "sgd", "--split-seeds", "0", "--seeds",
        "0..31", "--shard-size", "16", "--epochs", "20000", "--device", "cpu",
        "--no-report"]  # fmt: skip


def test_a_cluster_that_loses_every_worker_fails_the_run_in_bounded_time_then_resumes(
    prefect_server, cluster: servers.DaskCluster, tmp_path: Path
) -> None:
    """Every Dask worker killed mid-run: the run fails within the no-worker bound, in one line
    naming the scheduler and the resume command; a resume on a new worker trains only the
    missing shards and keeps the written parts byte for byte."""
    output, log = tmp_path / "out", tmp_path / "cli.log"
    bound = 5
    staged = lambda: sorted(output.glob(".staging/*/*.parquet"))  # noqa: E731
    cluster.wait_for_workers()
    env = prefect_server.env(
        IRIS_SWEEP_DASK_ADDRESS=cluster.address, IRIS_SWEEP_DASK_NO_WORKER_TIMEOUT=str(bound)
    )
    command = [sys.executable, "-m", "cli.sweep", *SLOW, "--output-dir", str(output)]
    with servers.running(command, env, log) as run:
        servers.wait_until(lambda: staged(), 240, "a written shard", run, log, 0.05)
        for worker in cluster.workers:
            servers.kill_group(worker)
        killed = time.monotonic()
        kept = {part.name: part.read_bytes() for part in staged()}
        code = run.wait(timeout=120)
        failed_after = time.monotonic() - killed
    text = log.read_text()
    assert code == 1, text[-3000:]
    assert failed_after < bound + 30, f"failed {failed_after:.0f} s after the workers died"
    (line,) = [line for line in text.splitlines() if line.startswith("iris-sweep: error:")]
    assert f"the Dask cluster at {cluster.address} has had no workers for {bound} s" in line
    run_id = re.search(r"`iris-sweep --resume ([0-9a-f-]+)`", line).group(1)
    assert 1 <= len(kept) < 4 and not list(output.glob("iris-sweep-*"))

    worker_log = cluster.folder / "worker-new.log"
    args = servers.dask_worker_args(cluster.address, cluster.folder, "worker-new")
    with servers.running(args, servers.dask_env(cluster.folder), worker_log):
        (new_pid,) = cluster.wait_for_workers(1).values()
        resume = ["--resume", run_id, "--output-dir", str(output)]
        servers.run_cli([sys.executable, "-m", "cli.sweep", *resume], env, 300)
    (folder,) = output.glob("iris-sweep-*")
    parts = {part.name: part for part in folder.glob("*.parquet")}
    assert len(parts) == 4 and len(read_results(str(folder))) == 2 * 32
    for name, content in kept.items():
        assert parts[name].read_bytes() == content, name
    for name in parts.keys() - kept.keys():
        writer = pq.read_schema(parts[name]).metadata[META_WRITER].decode()
        assert int(writer.rsplit(":", 1)[1]) == new_pid, (name, writer)

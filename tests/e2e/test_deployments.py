"""The deployments of prefect.yaml, deployed and run for real: server, work pool, worker."""

import contextlib
import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import ConcurrencyLimitStrategy, State, StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.states import Cancelled, Pending, Scheduled
from prefect.utilities.schema_tools.validation import validate

from flows.runners import DASK_ADDRESS_VARIABLE
from irismodel.parameters import SweepConfig
from irismodel.store import file_metadata, list_result_files, read_results
from irismodel.store.schema import COLUMNS

from . import servers

pytestmark = [pytest.mark.e2e, pytest.mark.server, pytest.mark.subprocess]

HEARTBEAT = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
TINY = servers.TINY
WEEKLY = {"seeds": "0..1999", "split_seeds": "0..3"}  # the weekly schedule's, in prefect.yaml
PREFECT = str(servers.BIN / "prefect")


def trigger(deployment: str, parameters: dict, env: dict[str, str], *options: str) -> UUID:
    """Run a deployment as the README does, `prefect deployment run --param`; return the run id."""
    params = [f"--param={name}={json.dumps(value)}" for name, value in parameters.items()]
    output = servers.run_cli([PREFECT, "deployment", "run", deployment, *params, *options], env)
    return UUID(re.search(r"UUID: ([0-9a-f-]{36})", output.stdout).group(1))


def wait_for_final_state(client, flow_run_id: UUID, timeout: float, worker_log: Path):
    """Return the flow run once its state is final, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        flow_run = client.read_flow_run(flow_run_id)
        if flow_run.state is not None and flow_run.state.is_final():
            assert flow_run.state.is_completed(), (
                f"{flow_run.state}\nthe worker's log ends:\n{servers.log_tail(worker_log)}"
            )
            return flow_run
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"flow run {flow_run_id} still {flow_run.state_name} after {timeout:.0f}s; "
                f"the worker's log ends:\n{servers.log_tail(worker_log)}"
            )
        time.sleep(0.5)


def check_weekly_parameters(nightly, tmp_path: Path) -> None:
    """The weekly schedule's parameters pass the run form's schema and the sweep's own checks."""
    parameters = {**nightly.parameters, **WEEKLY}
    assert validate(parameters, nightly.parameter_openapi_schema, raise_on_error=True) == []
    config = SweepConfig(**parameters, output_dir=str(tmp_path))  # raises naming what is wrong
    assert (len(config.seeds), len(config.split_seeds)) == (2000, 4)
    assert config.hidden_dims == SweepConfig(output_dir=str(tmp_path)).hidden_dims


def weekly_runs_scheduled(client, nightly, timeout: float = 30.0) -> list:
    """Return the nightly deployment's scheduled runs with the weekly parameters, once the
    server's scheduler has made them."""
    of_nightly = DeploymentFilter(id=DeploymentFilterId(any_=[nightly.id]))
    scheduled = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(
        any_=[StateType.SCHEDULED])))  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        runs = client.read_flow_runs(deployment_filter=of_nightly, flow_run_filter=scheduled)
        weekly = [run for run in runs if run.parameters == WEEKLY]
        if weekly and len(weekly) < len(runs):  # the nightly's runs are there too
            return weekly
        assert time.monotonic() < deadline, f"no weekly run scheduled: {runs}"
        time.sleep(1)


def assert_concurrency(deployment, limit: int, strategy: ConcurrencyLimitStrategy) -> None:
    """Assert the deployment's concurrency limit and collision strategy, as prefect.yaml sets."""
    assert deployment.global_concurrency_limit is not None, deployment.name
    assert deployment.global_concurrency_limit.limit == limit
    assert deployment.concurrency_options.collision_strategy == strategy


def second_run_meets_the_limit(client, deployment) -> State:
    """Start two runs of a limit-1 deployment as a worker does; return where the second ends.

    A worker proposes Pending before it starts a run; the server gives the deployment's one
    slot to the first and orchestrates the second by the collision strategy. The first is
    cancelled after, which frees the slot.
    """
    later = Scheduled(scheduled_time=datetime.now(UTC) + timedelta(hours=1))
    first, second = (
        client.create_flow_run_from_deployment(deployment.id, state=later) for _ in range(2)
    )
    assert client.set_flow_run_state(first.id, Pending()).status == SetStateStatus.ACCEPT
    refused = client.set_flow_run_state(second.id, Pending())
    assert refused.status == SetStateStatus.REJECT, refused
    assert refused.details.reason == "Deployment concurrency limit reached."
    assert client.read_flow_run(second.id).state.type == refused.state.type
    client.set_flow_run_state(first.id, Cancelled(), force=True)
    return refused.state


def test_deployments_run_on_a_worker_and_write_the_results_schema(
    deployed, prefect_client, tmp_path: Path
) -> None:
    """`prefect deploy --all` deploys prefect.yaml as written; a worker runs adhoc and adhoc-dask.

    nightly carries its 03:00 UTC cron and a weekly one of its own parameters (valid for the run
    form and the sweep), both active, whose runs the server schedules with those parameters;
    adhoc has none; nightly (CANCEL_NEW) and gpu (ENQUEUE) a
    concurrency limit of 1, which the server enforces when a second run would start; every
    deployment's runs send heartbeats each 30 s. adhoc, triggered with tiny parameters as the
    README does, runs in a real `prefect worker` to Completed and writes one file of the results
    schema, one row per (hidden_dim, optimizer, seed); adhoc-dask, pointed at a real Dask
    cluster by its job variable, trains in the Dask worker and writes the same rows.
    """
    env = deployed.server.env()
    pools = deployed.pools
    worker_log = deployed.worker.log_path
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(servers.dask_cluster(tmp_path / "dask", n_workers=1))

        nightly = prefect_client.read_deployment_by_name("iris-sweep/nightly")
        schedules = {s.slug: s for s in nightly.schedules}
        assert set(schedules) == {"nightly-0300-utc", "weekly-sunday-0400-utc"}
        each_night, each_week = schedules["nightly-0300-utc"], schedules["weekly-sunday-0400-utc"]
        assert (each_night.schedule.cron, each_night.parameters) == ("0 3 * * *", {})
        assert each_week.schedule.cron == "0 4 * * 0"  # Sunday
        assert each_week.parameters == WEEKLY
        assert all(s.schedule.timezone == "UTC" and s.active for s in nightly.schedules)
        assert "03:00 UTC" in nightly.description and "Sunday at 04:00 UTC" in nightly.description
        assert nightly.parameters == {}
        check_weekly_parameters(nightly, tmp_path)
        assert_concurrency(nightly, 1, ConcurrencyLimitStrategy.CANCEL_NEW)
        assert nightly.work_pool_name == pools["process"]
        # The pull step sends the worker to the folder `prefect deploy` ran in: this project.
        assert nightly.pull_steps == [
            {
                "prefect.deployments.steps.set_working_directory": {
                    "directory": str(servers.PROJECT_ROOT)
                }
            }
        ]
        adhoc = prefect_client.read_deployment_by_name("iris-sweep/adhoc")
        assert adhoc.schedules == []
        assert adhoc.work_pool_name == pools["process"]
        assert adhoc.global_concurrency_limit is None
        gpu = prefect_client.read_deployment_by_name("iris-sweep/gpu")
        assert (gpu.parameters, gpu.work_pool_name) == ({"device": "cuda"}, pools["gpu"])
        assert_concurrency(gpu, 1, ConcurrencyLimitStrategy.ENQUEUE)
        adhoc_dask = prefect_client.read_deployment_by_name("iris-sweep/adhoc-dask")
        assert adhoc_dask.job_variables["env"][DASK_ADDRESS_VARIABLE].startswith("tcp://")
        for deployment in (nightly, adhoc, gpu, adhoc_dask):
            assert deployment.job_variables["env"][HEARTBEAT] == "30", deployment.name

        local_output = tmp_path / "adhoc"
        adhoc_run = trigger("iris-sweep/adhoc", {**TINY, "output_dir": str(local_output)}, env)
        dask_output = tmp_path / "adhoc-dask"
        this_cluster = json.dumps({DASK_ADDRESS_VARIABLE: cluster.address})
        dask_run = trigger(
            "iris-sweep/adhoc-dask",
            {**TINY, "output_dir": str(dask_output)},
            env,
            f"--job-variable=env={this_cluster}",
        )
        dask_pids = cluster.wait_for_workers()
        flow_run = wait_for_final_state(prefect_client, adhoc_run, 120, worker_log)
        wait_for_final_state(prefect_client, dask_run, 120, worker_log)

    # The server's scheduler made the weekly runs, each on a Sunday at 04:00 UTC.
    for run in weekly_runs_scheduled(prefect_client, nightly):
        start = run.expected_start_time.astimezone(UTC)
        assert (start.weekday(), start.hour, start.minute) == (6, 4, 0), start
    # The guards, by hand, on runs scheduled an hour ahead, which the worker leaves alone.
    cancelled = second_run_meets_the_limit(prefect_client, nightly)
    assert cancelled.type == StateType.CANCELLED  # a second nightly or weekly never starts
    waiting = second_run_meets_the_limit(prefect_client, gpu)
    assert (waiting.type, waiting.name) == (StateType.SCHEDULED, "AwaitingConcurrencySlot")

    assert flow_run.deployment_id == adhoc.id
    (path,) = local_output.glob("iris-sweep-*")  # one published run folder
    assert len(list_result_files(str(path))) == 4  # a part file per shard
    assert file_metadata(str(path))["status"] == "complete"
    rows = read_results(str(local_output))  # checks the file against the results schema
    assert tuple(rows.columns) == COLUMNS
    assert len(rows) == 2 * 2 * 2  # hidden_dims x optimizers (sgd, manual) x seeds
    assert set(rows["flow_run_id"]) == {str(adhoc_run)}
    assert sorted(set(rows["hidden_dim"])) == TINY["hidden_dims"]
    assert sorted(set(rows["seed"])) == TINY["seeds"]
    assert rows["loss_curve"].map(len).eq(TINY["epochs"]).all()
    task_runs = prefect_client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[adhoc_run]))
    )
    names = {task_run.name for task_run in task_runs}
    assert {"train-h8-sgd-0000", "train-h9-manual-0000"} <= names

    rows_on_dask = read_results(str(dask_output))
    assert set(rows_on_dask["flow_run_id"]) == {str(dask_run)}
    assert servers.worker_pids(rows_on_dask) <= set(dask_pids.values())
    servers.assert_same_training(rows_on_dask, rows)

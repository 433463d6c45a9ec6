"""The iris-sweep flow: validate, load and split, open the run, train its shards, publish."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.drain import uses_temporary_server, wait_until_recorded
from flows.fanout import SweepFailed, failure_message, train_all
from flows.runners import task_runner_from_env
from irismodel.config import run_label, sweep_parameters
from irismodel.runs import plan_shards
from tasks.prepare import load_data, open_sweep_run, split_data, validate_parameters
from tasks.report import publish_report
from tasks.results import publish_results

__all__ = ["SweepFailed", "iris_sweep"]


def _run_name() -> str:
    return run_label(flow_run.parameters)


@flow(
    name="iris-sweep",
    flow_run_name=_run_name,  # e.g. h8-14_sgd+manual_s30_e1000, not a random name
    task_runner=task_runner_from_env(),
    validate_parameters=True,
    persist_result=False,  # the result is a path; the Parquet files are what persists
)
@sweep_parameters  # the signature, run form and parameter docs, from SweepConfig
def iris_sweep(**parameters: Any) -> str:
    """Train a 4-h-1 ReLU network for every hidden_dim x optimizer x seed; return the run folder.

    Seeds are cut into shards; one task per shard trains, evaluates and writes its rows into the
    run's staging folder, and the run is published as a whole when every shard is written. If
    some shards still fail after their retries, the run stays unpublished and ends Failed; a
    Retry of the flow run, or `resume=<run id>`, trains only the missing shards.
    """
    config = validate_parameters(**parameters)
    split = split_data(load_data(config.data_path), config)
    context, finished, published = open_sweep_run(config, split.data_fingerprint)
    shards = plan_shards(config)
    recorded = 4  # validate-parameters, load-data, split-data, open-run
    try:
        results = train_all(split, [] if published else shards, context, finished)
        recorded += results.submitted
        if published:
            path = context.place.published
        else:
            recorded += 1
            path = publish_results(context, results.failed)
        if path is not None and config.report:
            recorded += 1
            try:
                publish_report(path, context.flow_run_id)
            except Exception as error:  # results are the product; a report is a bonus
                get_run_logger().warning("the report could not be made: %s", error)
    finally:
        if uses_temporary_server():
            wait_until_recorded(flow_run.get_id() or "local", recorded)
    if results.failed:
        raise SweepFailed(failure_message(results, len(shards), context))
    return path

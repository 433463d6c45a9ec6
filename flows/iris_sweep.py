"""The iris-sweep flow: check the run (parameters, data, forecast), open it, train, publish."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.drain import api_answers, uses_temporary_server, wait_until_recorded
from flows.fanout import LAST_RUN, SweepFailed, failure_message, publication_failed, train_all
from flows.runners import task_runner_from_env
from irismodel.parameters import sweep_parameters
from irismodel.preflight import run_label
from irismodel.store import plan_shards
from tasks.prepare import check_run, open_sweep_run
from tasks.report import publish_report
from tasks.results import publish_results

__all__ = ["SweepFailed", "iris_sweep"]


def _run_name() -> str:
    return run_label(flow_run.parameters)


@flow(
    name="iris-sweep",
    flow_run_name=_run_name,  # e.g. h8-14_sgd+manual_s30_e1000, not a random name
    task_runner=task_runner_from_env(),
    validate_parameters=False,  # SweepConfig validates them, in check_run: one check, one message
    persist_result=False,  # the result is a path; the Parquet files are what persists
)
@sweep_parameters  # the parameters: SweepConfig's fields (irismodel/parameters.py)
def iris_sweep(**parameters: Any) -> str:
    """Train a 4-h-1 ReLU network for every hidden_dim x optimizer x seed; return the run folder.

    Seeds are cut into shards; one task per shard trains, evaluates and writes its rows into the
    run's staging folder, and the run is published as a whole when every shard is written. If
    some shards still fail after their retries, the run stays unpublished and ends Failed; a
    Retry of the flow run, or `resume=<run id>`, trains only the missing shards.
    """
    checked = check_run(**parameters)  # the pre-flight: once per run, the data read once
    config, splits = checked.config, checked.splits
    context, finished, published = open_sweep_run(config, splits)
    LAST_RUN.run_id, LAST_RUN.published = context.flow_run_id, None
    shards = plan_shards(config)
    recorded = 2  # preflight, open-run
    try:
        results = train_all(splits, [] if published else shards, context, finished)
        recorded += results.submitted
        if published:
            path = context.place.published
        else:
            recorded += 1
            try:
                path = publish_results(context, results.failed)
            except (OSError, ValueError) as error:  # disk full, a stranger in staging
                raise SweepFailed(publication_failed(error, context)) from error
        LAST_RUN.published = path
        if path is not None and config.report:
            if not api_answers():  # its artifacts would wait on a server that is gone
                get_run_logger().warning("no report: the Prefect API does not answer")
            else:
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

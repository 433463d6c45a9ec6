"""The iris-sweep flow: check the run (parameters, data, forecast), open it, train, publish."""

from typing import Any

from prefect import unmapped
from prefect.runtime import flow_run

from flows.runners import sweep_flow, task_runner_from_env, wait_for_shards
from irismodel.parameters import sweep_parameters
from irismodel.preflight import run_label
from irismodel.store import most_work_first, plan_shards
from tasks.events import announce_published
from tasks.prepare import check_run, open_sweep_run
from tasks.report import Progress, publish_report
from tasks.results import SweepFailed, failure_message, publish_results
from tasks.train import train_shard


@sweep_flow(
    name="iris-sweep",
    flow_run_name=lambda: run_label(flow_run.parameters),  # h8-14_sgd+manual_s30_e1000, not random
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
    Retry of the flow run, or `resume=<run id>`, trains only the missing shards. The flow run
    that publishes the run sends the event `iris-sweep.run.published` (tasks/events.py).
    """
    checked = check_run(**parameters)  # the pre-flight: once per run, the data read once
    config, splits = checked.config, checked.splits
    context, finished, already_published = open_sweep_run(config, splits)
    shards = plan_shards(config)
    if already_published:
        path = context.place.published
    else:
        progress = Progress(len(shards), len(finished))
        to_train = most_work_first([shard for shard in shards if shard.name not in finished])
        train = train_shard.with_options(task_run_name="train-{shard.name}")
        futures = train.map(unmapped(splits), to_train, unmapped(context))
        failed, stopped = wait_for_shards(futures, [s.name for s in to_train], progress.advance)
        path = publish_results(context, list(failed))
        if failed:
            raise SweepFailed(failure_message(failed, shards, context, stopped))
    answers = publish_report(path, context.flow_run_id) if config.report else None
    if not already_published:  # the event says "published now": a rerun finding it sends none
        announce_published(path, answers)
    return path

"""The iris-sweep flow: validate, load and split, open the run, train its shards, publish."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from pydantic import StrictBool, StrictFloat, StrictInt, StrictStr

from flows.drain import uses_temporary_server, wait_until_recorded
from flows.fanout import SweepFailed, failure_message, train_all
from flows.runners import task_runner_from_env
from irismodel.config import SweepConfig, run_label
from irismodel.runs import plan_shards
from tasks.prepare import load_data, open_sweep_run, split_data, validate_parameters
from tasks.report import publish_report
from tasks.results import publish_results

DEFAULTS = SweepConfig()
__all__ = ["SweepFailed", "iris_sweep"]


def _run_name() -> str:
    return run_label(flow_run.parameters)


@flow(
    name="iris-sweep",
    flow_run_name=_run_name,  # e.g. h8-14_sgd+manual_s10_e1000, not a random name
    task_runner=task_runner_from_env(),
    validate_parameters=True,
    persist_result=False,  # the result is a path; the Parquet files are what persists
)
def iris_sweep(
    # Strict types: Prefect would otherwise turn True into 1, "8" into 8 and "yes" into True
    # before validation could refuse them. Lists, so the UI shows editable defaults.
    hidden_dims: list[StrictInt] = list(DEFAULTS.hidden_dims),  # noqa: B006
    optimizers: list[StrictStr] = list(DEFAULTS.optimizers),  # noqa: B006
    seeds: list[StrictInt] | StrictStr = list(DEFAULTS.seed_set),  # noqa: B006
    learning_rate: StrictFloat = DEFAULTS.learning_rate,
    epochs: StrictInt = DEFAULTS.epochs,
    test_size: StrictFloat = DEFAULTS.test_size,
    split_seed: StrictInt = DEFAULTS.split_seed,
    standardize: StrictBool = DEFAULTS.standardize,
    positive_class: StrictStr | StrictInt = DEFAULTS.positive_class,
    data_path: StrictStr | None = DEFAULTS.data_path,
    device: StrictStr = DEFAULTS.device,
    output_dir: StrictStr = DEFAULTS.output_dir,
    shard_size: StrictInt | None = DEFAULTS.shard_size,
    resume: StrictStr | None = DEFAULTS.resume,
    force: StrictBool = DEFAULTS.force,
    report: StrictBool = DEFAULTS.report,
) -> str:
    """Train a 4-h-1 ReLU network for every hidden_dim x optimizer x seed; return the run folder.

    Seeds are cut into shards; one task per shard trains, evaluates and writes its rows into the
    run's staging folder, and the run is published as a whole when every shard is written. If
    some shards still fail after their retries, the run stays unpublished and ends Failed; a
    Retry of the flow run, or `resume=<run id>`, trains only the missing shards.
    """
    config = validate_parameters(
        hidden_dims=hidden_dims,
        optimizers=optimizers,
        seeds=seeds,
        learning_rate=learning_rate,
        epochs=epochs,
        test_size=test_size,
        split_seed=split_seed,
        standardize=standardize,
        positive_class=positive_class,
        data_path=data_path,
        device=device,
        output_dir=output_dir,
        shard_size=shard_size,
        resume=resume,
        force=force,
        report=report,
    )
    split = split_data(load_data(config.data_path), config)
    context, finished, published = open_sweep_run(config)
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


if __name__ == "__main__":
    from flows.cli import main

    raise SystemExit(main())

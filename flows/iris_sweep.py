"""The iris-sweep flow: validate, load and split, train every configuration in parallel, write."""

from __future__ import annotations

from prefect import flow
from prefect.futures import as_completed

from flows.drain import uses_temporary_server, wait_until_recorded
from flows.runners import task_runner_from_env
from irismodel.config import SweepConfig
from irismodel.sweep import configuration_name
from tasks.prepare import load_data, split_data, validate_parameters
from tasks.report import advance_progress, publish_report, start_progress
from tasks.results import write_run_results
from tasks.train import evaluate, train

DEFAULTS = SweepConfig()


class SweepFailed(RuntimeError):
    """Some configurations failed after their retries; the finished ones were written."""


@flow(
    name="iris-sweep",
    task_runner=task_runner_from_env(),
    validate_parameters=True,
    persist_result=False,  # the result is a path; the Parquet file is what persists
)
def iris_sweep(
    # Lists, so the Prefect UI shows editable defaults; the flow never mutates them.
    hidden_dims: list[int] = list(DEFAULTS.hidden_dims),  # noqa: B006
    optimizers: list[str] = list(DEFAULTS.optimizers),  # noqa: B006
    seeds: list[int] = list(DEFAULTS.seeds),  # noqa: B006
    learning_rate: float = DEFAULTS.learning_rate,
    epochs: int = DEFAULTS.epochs,
    test_size: float = DEFAULTS.test_size,
    split_seed: int = DEFAULTS.split_seed,
    standardize: bool = DEFAULTS.standardize,
    positive_class: str | int = DEFAULTS.positive_class,
    data_path: str | None = DEFAULTS.data_path,
    device: str = DEFAULTS.device,
    output_dir: str = DEFAULTS.output_dir,
) -> str:
    """Train a 4-h-1 ReLU network for every hidden_dim x optimizer x seed; return the Parquet path.

    Every (hidden_dim, optimizer) trains all its seeds at once in one task; tasks run side by
    side. If some still fail after their retries, the finished rows are written to a file
    marked partial and the run ends Failed, naming them; a rerun trains only those.
    """
    context = validate_parameters(
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
    )
    config = context.config
    split = split_data(load_data(config.data_path), context)

    progress = start_progress(len(config.hidden_dims) * len(config.optimizers))
    trainings = {}
    for hidden_dim in config.hidden_dims:
        for optimizer in config.optimizers:
            name = configuration_name(hidden_dim, optimizer)
            trainings[name] = train.with_options(task_run_name=f"train-{name}").submit(
                split, hidden_dim, optimizer, context
            )

    # Evaluate each configuration as soon as it is trained, so an evaluation never holds a
    # worker while it waits for its training.
    names = {future.task_run_id: name for name, future in trainings.items()}
    evaluations = {}
    for done, future in enumerate(as_completed(list(trainings.values())), start=1):
        future.wait()  # takes the final state from the runner, not from the API
        advance_progress(progress, done, len(trainings))
        if future.state.is_completed():
            name = names[future.task_run_id]
            evaluations[name] = evaluate.with_options(task_run_name=f"evaluate-{name}").submit(
                future, split, context
            )
    tables, failed = [], [name for name in trainings if name not in evaluations]
    for name, future in evaluations.items():
        future.wait()
        if future.state.is_completed():
            tables.append(future.result())
        else:
            failed.append(name)
    failed.sort(key=list(trainings).index)
    causes = {name: (evaluations.get(name) or trainings[name]).state.message for name in failed}

    # validate-parameters, load-data, split-data, then write-results and publish-report once
    # they are reached: the task runs the temporary server must record before it stops
    one_off = 3
    try:
        if not tables:
            raise SweepFailed(
                f"all {len(failed)} configurations failed after their retries "
                f"({', '.join(failed)}); nothing was written. "
                f"First failure, {failed[0]}: {causes[failed[0]]}"
            )
        one_off += 1
        path = write_run_results(tables, context, failed)
        one_off += 1
        publish_report(path, context.flow_run_id)
    finally:
        if uses_temporary_server():
            wait_until_recorded(context.flow_run_id, one_off + len(trainings) + len(evaluations))
    if failed:
        raise SweepFailed(
            f"{len(failed)} of {len(trainings)} configurations failed after their retries: "
            f"{', '.join(failed)}. The {len(trainings) - len(failed)} finished ones are in "
            f"{path} (status partial); rerun the same sweep to train only the missing ones. "
            f"First failure, {failed[0]}: {causes[failed[0]]}"
        )
    return path


if __name__ == "__main__":
    from flows.cli import main

    raise SystemExit(main())

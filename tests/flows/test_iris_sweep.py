"""The iris-sweep flow under a Prefect test harness: it runs, writes rows, and they are sound."""

import numpy as np
import pytest

from irismodel.store import file_metadata, read_results

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.server]

TINY = dict(
    hidden_dims=[8, 9], optimizers=["sgd", "manual"], split_seeds="0", seeds=[0, 1, 2], epochs=60
)


def test_flow_writes_one_row_per_model(tmp_path):
    """A tiny sweep publishes one run folder with a row per (hidden_dim, optimizer, seed)."""
    from flows.iris_sweep import iris_sweep

    path = iris_sweep(**TINY, output_dir=str(tmp_path), shard_size=2)
    frame = read_results(str(tmp_path))
    assert sorted(frame["shard"].unique()) == [
        f"h{h}-{o}-{i:04d}" for h in (8, 9) for o in ("manual", "sgd") for i in (0, 1)
    ]
    assert len(frame) == 2 * 2 * 3
    assert set(zip(frame.hidden_dim, frame.optimizer, frame.seed, strict=True)) == {
        (h, o, s) for h in (8, 9) for o in ("sgd", "manual") for s in (0, 1, 2)
    }
    assert frame.flow_run_id.nunique() == 1
    assert (frame.run_status == "complete").all()
    assert all(len(curve) == 60 for curve in frame.loss_curve)
    np.testing.assert_array_equal(frame.final_train_loss, [curve[-1] for curve in frame.loss_curve])
    assert file_metadata(path)["parameters"]["hidden_dims"] == [8, 9]


def _curves(frame, hidden_dim, optimizer):
    rows = frame[(frame.hidden_dim == hidden_dim) & (frame.optimizer == optimizer)]
    return {row.seed: np.asarray(row.loss_curve) for row in rows.itertuples()}


def test_row_is_bit_identical_alone_or_beside_others(tmp_path):
    """A row's loss curve is bit-identical whether its task ran alone or among many others."""
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.iris_sweep import iris_sweep

    seeds = [0, 1, 2, 3]
    iris_sweep.with_options(task_runner=ThreadPoolTaskRunner(max_workers=1))(
        hidden_dims=[10],
        optimizers=["sgd"],
        split_seeds="0",
        seeds=seeds,
        epochs=150,
        output_dir=str(tmp_path / "a"),
    )
    iris_sweep.with_options(task_runner=ThreadPoolTaskRunner(max_workers=8))(
        hidden_dims=[8, 9, 10, 11],
        optimizers=["adam", "sgd", "momentum"],
        split_seeds="0",
        seeds=seeds,
        epochs=150,
        output_dir=str(tmp_path / "b"),
    )
    alone = _curves(read_results(str(tmp_path / "a")), 10, "sgd")
    beside = _curves(read_results(str(tmp_path / "b")), 10, "sgd")
    assert sorted(alone) == sorted(beside) == seeds
    for seed in seeds:
        np.testing.assert_array_equal(alone[seed], beside[seed])


@pytest.fixture(scope="module")
def cli_run(prefect_harness, tmp_path_factory):
    """One tiny sweep through `python -m cli.sweep`, with no compiled loops to train with.

    Returns the finished process and its output folder.
    """
    import os
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_URL

    folder = tmp_path_factory.mktemp("cli")
    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "IRISMODEL_NATIVE_DIR": str(folder / "nothing-built-here"),
        "IRISMODEL_NATIVE_BUILD": "0",
    }
    args = ["--hidden-dims", "8..9", "--split-seeds", "0", "--seeds", "0", "1", "--epochs", "40",
            "--optimizers", "sgd", "--output-dir", str(folder / "out")]  # fmt: skip
    completed = subprocess.run(
        [sys.executable, "-m", "cli.sweep", *args],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    return completed, folder / "out"


def test_runs_are_named_and_tagged_by_what_they_sweep(tmp_path):
    """A run is named after its sweep and tagged with it, so the Runs page can be filtered."""
    from prefect.client.orchestration import get_client

    from flows.iris_sweep import iris_sweep

    state = iris_sweep(**TINY, output_dir=str(tmp_path), return_state=True)
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert run.name == "h8-9_sgd+manual_s3_e60"
    assert {"iris-sweep", "h8-9", "sgd", "manual", "seeds:3", "epochs:60", "cpu"} <= set(run.tags)


@pytest.mark.subprocess
def test_training_without_the_compiled_loops_says_why_and_how_to_fix(cli_run):
    """A shard trained by the eager loop logs, at INFO, that it is slower, why, and the fix."""
    completed, out = cli_run
    assert completed.returncode == 0, completed.stderr[-3000:]
    log = completed.stdout + completed.stderr
    assert "INFO" in log and "h8-sgd-0000: trained with the eager Python loop, 3-12x slower, " \
        "because the compiled loops are not built (" in log  # fmt: skip
    assert "python -m irismodel.native build" in log
    assert set(read_results(str(out))["engine"]) == {"batched"}


def test_the_server_refuses_credentials_before_storing_a_run():
    """A run of a deployment with `user:secret@` in output_dir is refused by the server itself.

    The flow's own validation would refuse it too, but only once the run, its parameters
    included, is stored in Prefect's database; the schema stops it before that.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    from flows.iris_sweep import iris_sweep

    deployment_id = iris_sweep.to_deployment(name="credentials-check").apply()
    secret = "s3://AKIAEXAMPLE:hunter2@bucket/results"
    with get_client(sync_client=True) as client:
        with pytest.raises(Exception, match=r"output_dir.*does not match"):
            client.create_flow_run_from_deployment(deployment_id, parameters={"output_dir": secret})
        fine = client.create_flow_run_from_deployment(
            deployment_id, parameters={"output_dir": "s3://bucket/results"}
        )
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )
        assert [run.id for run in runs] == [fine.id]
        assert all("hunter2" not in str(run.parameters) for run in runs)
        client.delete_flow_run(fine.id)

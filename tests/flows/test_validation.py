"""Bad input fails the flow and the CLI before any training, naming the parameter."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from irismodel.data import FEATURE_COLUMNS, load_dataset
from irismodel.store import file_metadata, read_results

flow_test = pytest.mark.usefixtures("prefect_harness")

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TINY = dict(
    hidden_dims=[8, 9], optimizers=["sgd"], split_seeds="0", seeds=[0, 1], epochs=30, device="cpu"
)


def _data_files(folder: Path) -> dict[str, str]:
    iris = load_dataset()
    frame = pd.DataFrame(iris.features, columns=list(FEATURE_COLUMNS))
    frame["species"] = [iris.class_names[i] for i in iris.labels]
    with_nan = frame.copy()
    with_nan.loc[4, "sepal_length"] = math.nan
    frame.iloc[:50].to_csv(folder / "setosa.csv", index=False)
    with_nan.to_csv(folder / "nan.csv", index=False)
    frame.drop(columns="species").to_parquet(folder / "nolabel.parquet")
    (folder / "iris.txt").write_text("not a table")
    (folder / "a-file").write_text("not a folder")
    return {name: str(folder / name) for name in os.listdir(folder)}


# (parameters, exception type, pattern naming the parameter and what is allowed);
# "{dir}" in a value is replaced by the test's data folder.
BAD_FLOW_INPUTS = {
    "hidden_dims 0": ({"hidden_dims": [8, 0]}, ValueError, r"hidden_dims: 0 .*1\.\.4096"),
    "hidden_dims fractional": (
        {"hidden_dims": [8.5]},
        ValueError,
        r"hidden_dims: 8\.5 is not an integer; allowed are 1\.\.4096",
    ),
    # Strict types: nothing is turned into a value the library would accept
    "hidden_dims a bool": (
        {"hidden_dims": [True]},
        ValueError,
        r"hidden_dims: True is not an integer; allowed are 1\.\.4096",
    ),
    "hidden_dims a string": (
        {"hidden_dims": ["8"]},
        ValueError,
        r"hidden_dims: '8' is not an integer; allowed are 1\.\.4096",
    ),
    "standardize a string": (
        {"standardize": "yes"},
        ValueError,
        r"standardize: 'yes' is not allowed; it must be true or false",
    ),
    "epochs a float": (
        {"epochs": 30.0},
        ValueError,
        r"epochs: 30\.0 is not allowed; it must be an integer in 1\.\.1,000,000",
    ),
    "optimizers unknown": (
        {"optimizers": ["rmsprop"]},
        ValueError,
        r"optimizers: unknown optimizer 'rmsprop'; valid names are sgd, manual, ",
    ),
    "seeds duplicate": (
        {"split_seeds": "0", "seeds": [0, 0]},
        ValueError,
        r"seeds: duplicate value\(s\) \[0\]",
    ),
    "learning_rate NaN": (
        {"learning_rate": math.nan},
        ValueError,
        r"learning_rate: nan is not allowed; it must be a positive finite number",
    ),
    "epochs 0": ({"epochs": 0}, ValueError, r"epochs: 0 is not allowed.*integer in 1\.\."),
    "test_size 1": ({"test_size": 1.0}, ValueError, r"test_size: 1\.0 is not allowed.*\[0, 1\)"),
    "test_size leaves no training row": (
        {"test_size": 0.995},
        ValueError,
        r"test_size: 0\.995 cannot split 150 rows",
    ),
    "positive_class unknown": (
        {"positive_class": "rose"},
        ValueError,
        r"positive_class: 'rose' is not a class of the data; valid are the names setosa, ",
    ),
    "device unknown": ({"device": "tpu"}, ValueError, r"device: unknown device 'tpu'; valid are"),
    "data_path missing": (
        {"data_path": "{dir}/absent.csv"},
        ValueError,
        r"data_path: no such file",
    ),
    "data_path unsupported": (
        {"data_path": "{dir}/iris.txt"},
        ValueError,
        r"data_path: unsupported format '\.txt'.*supported are \.csv, \.parquet",
    ),
    "data_path no label column": (
        {"data_path": "{dir}/nolabel.parquet"},
        ValueError,
        r"data_path: .* has no label column; expected columns sepal_length",
    ),
    "data_path a folder": (
        {"data_path": "{dir}"},
        ValueError,
        r"data_path: '.*' is a folder; expected a CSV or Parquet file",
    ),
    "data_path NaN feature": (
        {"data_path": "{dir}/nan.csv"},
        ValueError,
        r"data_path: .* has NaN or infinite features",
    ),
    "data_path single class": (
        {"data_path": "{dir}/setosa.csv", "positive_class": "setosa"},
        ValueError,
        r"positive_class: after binarizing by 'setosa' .* single class",
    ),
    "output_dir a file": (
        {"output_dir": "{dir}/a-file"},
        ValueError,
        r"output_dir: .*a-file' is a file; it must be a folder",
    ),
    "output_dir not writable": (
        {"output_dir": "/proc/iris-sweep-out"},
        ValueError,
        r"output_dir: '/proc/iris-sweep-out' is not writable",
    ),
}
if not torch.cuda.is_available():
    BAD_FLOW_INPUTS["device cuda without CUDA"] = (
        {"device": "cuda"},
        ValueError,
        r"device: 'cuda' asks for CUDA, but this machine has no CUDA device",
    )


def _task_run_names(flow_run_id) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return [run.name for run in runs]


def _listing(folder: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*"))


@flow_test
@pytest.mark.server
@pytest.mark.parametrize(
    ("parameters", "error", "message"), list(BAD_FLOW_INPUTS.values()), ids=list(BAD_FLOW_INPUTS)
)
def test_bad_input_fails_the_flow_before_training(tmp_path, parameters, error, message):
    """A bad parameter ends the flow run Failed before any training, naming it; nothing is
    written."""
    from flows.iris_sweep import iris_sweep

    _data_files(tmp_path)
    output = tmp_path / "out"
    values = {"output_dir": str(output), **TINY}
    values.update(
        {k: v.format(dir=tmp_path) if isinstance(v, str) else v for k, v in parameters.items()}
    )
    before = _listing(tmp_path)
    state = iris_sweep(**values, return_state=True)

    assert state.is_failed()
    assert re.search(message, state.message), state.message
    with pytest.raises(error, match=message):
        state.result()
    assert not output.exists()
    assert _listing(tmp_path) == before, "the flow wrote or changed files"
    names = _task_run_names(state.state_details.flow_run_id)
    assert not [name for name in names if name.startswith(("train", "evaluate", "write"))]


@flow_test
@pytest.mark.server
def test_bad_input_raises_when_called_from_python(tmp_path):
    """Called from Python without return_state, the flow raises the ValueError itself."""
    from flows.iris_sweep import iris_sweep

    with pytest.raises(ValueError, match=r"optimizers: unknown optimizer 'SGD'; valid names are"):
        iris_sweep(**{**TINY, "optimizers": ["SGD"]}, output_dir=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def _run_cli(args: list[str], home: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")])),
    )
    home.mkdir()
    return subprocess.Popen(
        [sys.executable, "-m", "cli.sweep", *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


CLI_CASES = {
    "hidden-dims 0": (["--hidden-dims", "0"], r"iris-sweep: error: hidden_dims: 0 .*1\.\.4096"),
    "missing data file": (
        ["--data-path", "absent.csv"],
        r"iris-sweep: error: data_path: no such file 'absent\.csv'",
    ),
    "learning rate inf": (
        ["--learning-rate", "inf"],
        r"iris-sweep: error: learning_rate: inf is not allowed",
    ),
    # text that is no number stays text, for the parameters' validation to refuse by name
    "epochs in other digits": (
        ["--epochs", "\u0663"],
        r"^iris-sweep: error: epochs: '\u0663' is not allowed; it must be an integer in "
        r"1\.\.1,000,000$",
    ),
    "learning rate with an underscore": (
        ["--learning-rate", "1_0"],
        r"^iris-sweep: error: learning_rate: '1_0' is not allowed; it must be a positive finite",
    ),
    "unknown optimizer": (
        ["--optimizers", "sgd", "foo"],
        r"^iris-sweep: error: optimizers: unknown optimizer 'foo'; valid names are sgd, manual, ",
    ),
    "data path a folder": (
        ["--data-path", "tests"],
        r"^iris-sweep: error: data_path: 'tests' is a folder; expected a CSV or Parquet file",
    ),
    # argparse's own refusals read as the rest: one line, the parameter's name, no usage block
    "a missing value": (
        ["--epochs"],
        r"^iris-sweep: error: epochs: expected one argument \(see iris-sweep --help\)$",
    ),
}


@pytest.mark.subprocess
def test_cli_refuses_bad_input_with_exit_code_2_and_starts_no_server(tmp_path):
    """The command line prints `iris-sweep: error: <parameter>: ...`, exits 2, starts no server."""
    output = tmp_path / "out"
    processes = {
        case: _run_cli([*args, "--output-dir", str(output)], tmp_path / f"home-{index}")
        for index, (case, (args, _)) in enumerate(CLI_CASES.items())
    }
    outcomes = {case: process.communicate(timeout=240) for case, process in processes.items()}
    for case, (_, message) in CLI_CASES.items():
        stdout, stderr = outcomes[case]
        assert processes[case].returncode == 2, (case, stderr[-2000:])
        assert stdout == ""
        assert re.search(message, stderr), (case, stderr[-2000:])
        assert "Traceback" not in stderr
    assert not output.exists()
    # No temporary Prefect server ran: it would have created its database in PREFECT_HOME.
    for index in range(len(CLI_CASES)):
        assert not list((tmp_path / f"home-{index}").rglob("*.db"))


@pytest.mark.subprocess
def test_cli_refuses_a_non_integer_with_exit_code_2(tmp_path):
    """A hidden dim that is no integer is a usage error too: exit 2, the parameter named."""
    process = _run_cli(["--hidden-dims", "eight", "--output-dir", str(tmp_path)], tmp_path / "h")
    stdout, stderr = process.communicate(timeout=240)
    assert process.returncode == 2, stderr[-2000:]
    assert re.search(r"iris-sweep: error: hidden_dims: .eight. is not an integer", stderr), stderr


@flow_test
@pytest.mark.server
def test_divergence_is_recorded_not_raised(tmp_path):
    """A learning rate that blows training up completes, with NaN losses and `diverged` set."""
    from flows.iris_sweep import iris_sweep

    path = iris_sweep(
        hidden_dims=[8],
        optimizers=["sgd", "adam", "momentum"],
        split_seeds="0",
        seeds=[0, 1],
        epochs=30,
        learning_rate=1e30,
        device="cpu",
        output_dir=str(tmp_path),
    )
    frame = read_results(str(tmp_path))
    assert file_metadata(path)["status"] == "complete"
    assert len(frame) == 6 and (frame.run_status == "complete").all()
    assert frame.diverged.all()
    for curve in frame.loss_curve:
        assert not np.isfinite(curve).all()
        assert np.isfinite(curve[0])  # the first forward pass, before any update, is finite
    assert not np.isfinite(frame.final_train_loss).any()  # NaN or inf, as the curve's end
    # Metrics of the predictions are computed; those that need finite probabilities are null.
    assert frame.train_accuracy.notna().all() and frame.test_accuracy.notna().all()
    assert frame.train_accuracy.between(0, 1).all()
    assert frame.train_roc_auc.isna().all() and frame.train_log_loss.isna().all()


def test_the_untouched_run_form_passes_the_servers_schema_validation():
    """Every default, as the run form sends it, passes the schema check the server runs."""
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools.validation import validate

    from flows.iris_sweep import iris_sweep

    schema = parameter_schema(iris_sweep).model_dump_for_openapi()
    untouched = {name: field.get("default") for name, field in schema["properties"].items()}
    assert untouched["data_path"] is None and untouched["shard_size"] is None
    assert validate(untouched, schema, raise_on_error=False, preprocess=True) == []
    typed = {
        **untouched,
        "hidden_dims": "8..10, 12",
        "split_seeds": "0",
        "seeds": "0..4",
        "shard_size": 2,
    }
    assert validate(typed, schema, raise_on_error=False, preprocess=True) == []
    bad = validate({**untouched, "shard_size": 0}, schema, raise_on_error=False, preprocess=True)
    assert len(bad) == 1 and "shard_size" in str(list(bad[0].path))


def test_cli_reads_negative_and_spaced_ranges_as_python_does(tmp_path, capsys):
    """`--seeds -1..3` is refused by name as out of range, not as a missing argument; `" 0 .. 9 "`
    is the range 0..9 on the command line as it is from Python."""
    from cli.sweep import main, parse_parameters
    from irismodel.parameters import SweepConfig

    assert main(["--seeds", "-1..3", "--output-dir", str(tmp_path / "out")]) == 2
    assert re.search(r"iris-sweep: error: seeds: -1 is out of range", capsys.readouterr().err)
    given = parse_parameters(["--seeds", " 0 .. 9 ", "--hidden-dims", "8", "..", "10", "12"])
    assert (given["seeds"], given["hidden_dims"]) == ("0..9", "8..10, 12")
    assert SweepConfig(seeds=given["seeds"]).seeds == SweepConfig(seeds=" 0 .. 9 ").seeds
    assert not (tmp_path / "out").exists()

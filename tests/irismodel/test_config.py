"""Sweep parameters: each bad value is refused with a message naming it and the allowed values."""

from __future__ import annotations

import math

import pytest
import torch

from irismodel.config import (
    MAX_HIDDEN_DIM,
    MAX_LEARNING_RATE,
    SweepConfig,
    check_data,
    validate_config,
)

OPTIMIZER_NAMES = "sgd, manual, manual-no-zero-grad, momentum, adam"
NO_CUDA = not torch.cuda.is_available()

# (parameters, the pattern the message must match: the parameter's name and what is allowed)
BAD_PARAMETERS = {
    "hidden_dims empty": ({"hidden_dims": []}, r"hidden_dims: must not be empty.*1\.\.4096"),
    "hidden_dims 0": ({"hidden_dims": [8, 0]}, r"hidden_dims: 0 is out of range.*1\.\.4096"),
    "hidden_dims negative": ({"hidden_dims": [-3]}, r"hidden_dims: -3 is out of range.*1\.\.4096"),
    "hidden_dims fractional": (
        {"hidden_dims": [8.5]},
        r"hidden_dims: 8\.5 is not an integer.*1\.\.4096",
    ),
    "hidden_dims string": (
        {"hidden_dims": ["8"]},
        r"hidden_dims: '8' is not an integer.*1\.\.4096",
    ),
    "hidden_dims NaN": ({"hidden_dims": [math.nan]}, r"hidden_dims: nan is not an integer"),
    "hidden_dims not a list": ({"hidden_dims": 8}, r"hidden_dims: expected a list of integers"),
    "hidden_dims huge": (
        {"hidden_dims": [MAX_HIDDEN_DIM + 1]},
        r"hidden_dims: 4097 is out of range.*1\.\.4096",
    ),
    "optimizers empty": (
        {"optimizers": []},
        rf"optimizers: must not be empty; valid names are {OPTIMIZER_NAMES}",
    ),
    "optimizers unknown": (
        {"optimizers": ["sgd", "rmsprop"]},
        rf"optimizers: unknown optimizer 'rmsprop'; valid names are {OPTIMIZER_NAMES}",
    ),
    "optimizers a string": ({"optimizers": "sgd"}, rf"optimizers: .*{OPTIMIZER_NAMES}"),
    "optimizers duplicate": ({"optimizers": ["sgd", "sgd"]}, r"optimizers: duplicate names"),
    "seeds empty": ({"split_seeds": "0", "seeds": []}, r"seeds: must not be empty.*0\.\."),
    "seeds negative": (
        {"split_seeds": "0", "seeds": [0, -1]},
        r"seeds: -1 is out of range; allowed are 0\.\.",
    ),
    "seeds duplicate": (
        {"split_seeds": "0", "seeds": [1, 2, 1]},
        r"seeds: duplicate value\(s\) \[1\]; each may appear",
    ),
    "learning_rate 0": ({"learning_rate": 0}, r"learning_rate: 0 .*positive finite number"),
    "learning_rate 0 in float32": (
        {"learning_rate": 1e-46},
        r"learning_rate: 1e-46 is not allowed; .*at least 1\.2e-38 \(in float32",
    ),
    "learning_rate negative": (
        {"learning_rate": -0.1},
        r"learning_rate: -0\.1 .*positive finite number",
    ),
    "learning_rate NaN": ({"learning_rate": math.nan}, r"learning_rate: nan .*positive finite"),
    "learning_rate inf": ({"learning_rate": math.inf}, r"learning_rate: inf .*positive finite"),
    "learning_rate overflows float32": (
        {"learning_rate": 1e38},
        r"learning_rate: 1e\+38 is not allowed.*at most 1e\+30",
    ),
    "learning_rate a string": ({"learning_rate": "0.1"}, r"learning_rate: expected a number"),
    "epochs 0": ({"epochs": 0}, r"epochs: 0 is not allowed.*integer in 1\.\.1000000"),
    "epochs negative": ({"epochs": -5}, r"epochs: -5 is not allowed.*integer in 1\.\.1000000"),
    "epochs fractional": ({"epochs": 2.5}, r"epochs: 2\.5 is not allowed.*integer in 1\.\."),
    "test_size negative": ({"test_size": -0.1}, r"test_size: -0\.1 is not allowed.*\[0, 1\)"),
    "test_size 1": ({"test_size": 1}, r"test_size: 1 is not allowed.*\[0, 1\)"),
    "test_size above 1": ({"test_size": 1.5}, r"test_size: 1\.5 is not allowed.*\[0, 1\)"),
    "test_size NaN": ({"test_size": math.nan}, r"test_size: nan is not allowed.*\[0, 1\)"),
    "split_seeds negative": (
        {"split_seeds": [-1]},
        r"split_seeds: -1 is out of range.*0\.\.4294967295",
    ),
    "split_seeds too many": (
        {"split_seeds": "0..1000"},
        r"split_seeds: 1,001 values; at most 1,000",
    ),
    "standardize not a bool": ({"standardize": "yes"}, r"standardize: expected true or false"),
    "positive_class a list": ({"positive_class": [1]}, r"positive_class: expected a class name"),
    "device unknown": (
        {"device": "tpu"},
        r"device: unknown device 'tpu'; valid are auto, cpu, cuda, cuda:N",
    ),
    "device malformed cuda": ({"device": "cuda:x"}, r"device: unknown device 'cuda:x'"),
    "data_path missing": ({"data_path": "/nonexistent/iris.csv"}, r"data_path: no such file"),
    "data_path unsupported": (
        {"data_path": "iris.xlsx"},
        r"data_path: unsupported format '\.xlsx'.*supported are \.csv, \.parquet, \.pq",
    ),
    "data_path blank": ({"data_path": "   "}, r"data_path: expected a path to a \.csv or"),
    "shard_size 0": ({"shard_size": 0}, r"shard_size: 0 is not allowed.*1\.\.100000"),
    "too many shards": (
        {"split_seeds": "0", "seeds": "0..999999", "shard_size": 1},
        r"shard_size: 1 seeds per shard makes 21,000,000 shard tasks; at most 100,000",
    ),
    "seeds beyond the bound": (
        {"split_seeds": "0", "seeds": "0..1000000000"},
        r"seeds: 1,000,000,001 values; at most 10,000,000 are allowed",
    ),
    "seeds text not a range": (
        {"split_seeds": "0", "seeds": "0..x"},
        r"seeds: '0\.\.x' is not an integer or a range",
    ),
    "seeds overlapping ranges": (
        {"split_seeds": "0", "seeds": "0..9, 5..20"},
        r"seeds: duplicate value\(s\) \[5\]",
    ),
    "resume not a run id": ({"resume": "../x"}, r"resume: '\.\./x' is not a run id"),
    "unknown parameter": (
        {"hidden_dim": [8]},
        r"unknown parameter\(s\) hidden_dim; valid are hidden_dims, ",
    ),
}


@pytest.mark.parametrize(
    ("parameters", "message"), list(BAD_PARAMETERS.values()), ids=list(BAD_PARAMETERS)
)
def test_bad_parameter_is_refused_by_name(tmp_path, parameters, message):
    """A bad parameter raises ValueError naming it and the allowed values; nothing is written."""
    output = tmp_path / "out"
    with pytest.raises(ValueError, match=message):
        validate_config(**{"output_dir": str(output), **parameters})
    assert not output.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_cuda_is_refused(tmp_path, device):
    """Asking for CUDA on a machine without it is refused before training, suggesting cpu/auto."""
    with pytest.raises(ValueError, match=r"device: .* no CUDA device.*use 'cpu' or 'auto'"):
        validate_config(device=device, output_dir=str(tmp_path))


@pytest.mark.skipif(NO_CUDA, reason="this machine has no CUDA")
def test_missing_cuda_index_is_refused(tmp_path):
    """A CUDA index beyond the machine's devices is refused, naming the ones that exist."""
    with pytest.raises(ValueError, match=r"device: 'cuda:99' does not exist.*cuda:0 to"):
        validate_config(device="cuda:99", output_dir=str(tmp_path))


def test_output_dir_that_is_a_file_is_refused(tmp_path):
    """An output_dir that is a file, or lies under one, is refused and left as it was."""
    a_file = tmp_path / "results.txt"
    a_file.write_text("keep me")
    with pytest.raises(ValueError, match=r"output_dir: .*results\.txt' is a file; it must be a"):
        validate_config(output_dir=str(a_file))
    with pytest.raises(ValueError, match=r"output_dir: .* cannot be created: .* is a file"):
        validate_config(output_dir=str(a_file / "sub"))
    assert a_file.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.txt"]


@pytest.mark.parametrize("location", ["/proc/iris-sweep-out", "/proc/iris-sweep-out/deeper"])
def test_output_dir_that_cannot_be_written_is_refused(location):
    """An output_dir where no file can be created (under /proc, even for root) is refused."""
    with pytest.raises(ValueError, match=r"output_dir: '/proc/iris-sweep-out.*' is not writable"):
        validate_config(output_dir=location)


@pytest.mark.parametrize("location", ["", "   ", 7])
def test_output_dir_that_is_no_path_is_refused(location):
    """An empty or non-string output_dir is refused by name."""
    with pytest.raises(ValueError, match=r"output_dir: expected a folder path or URI"):
        validate_config(output_dir=location)


def test_valid_parameters_give_a_normalised_config(tmp_path):
    """Valid parameters come back as tuples and floats, the device resolved, nothing written."""
    output = tmp_path / "not-yet"
    config = validate_config(
        hidden_dims=[8, 9.0],
        optimizers=["sgd", "adam"],
        split_seeds="0",
        seeds=[3, 1],
        learning_rate=1,
        epochs=5,
        test_size=0,
        device="cpu",
        output_dir=str(output),
    )
    assert config.hidden_dims == (8, 9) and all(type(h) is int for h in config.hidden_dims)
    assert config.optimizers == ("sgd", "adam")
    assert list(config.seed_set) == [1, 3] and config.parameters()["seeds"] == "1, 3"
    assert config.learning_rate == 1.0 and type(config.learning_rate) is float
    assert config.test_size == 0.0
    assert config.resolved_device == "cpu"
    assert config.parameters()["hidden_dims"] == [8, 9]
    assert not output.exists()


def test_defaults_are_valid(tmp_path):
    """The defaults, the notebook's set-up, pass validation."""
    config = validate_config(output_dir=str(tmp_path))
    assert config == SweepConfig(output_dir=str(tmp_path))
    assert config.resolved_device == ("cuda" if torch.cuda.is_available() else "cpu")


def test_largest_learning_rate_is_accepted(tmp_path):
    """The largest allowed learning rate passes: divergence is data, not a validation error."""
    config = validate_config(learning_rate=MAX_LEARNING_RATE, output_dir=str(tmp_path))
    assert config.learning_rate == MAX_LEARNING_RATE


def test_check_data_refuses_data_dependent_problems(tmp_path):
    """check_data refuses a positive class the data lacks and a test_size leaving no train row."""
    config = validate_config(positive_class="rose", output_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"positive_class: 'rose' is not a class of the data"):
        check_data(config)
    config = validate_config(test_size=0.995, output_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"test_size: 0\.995 cannot split 150 rows"):
        check_data(config)
    split = check_data(validate_config(output_dir=str(tmp_path)))
    assert (len(split.y_train), len(split.y_test)) == (112, 38)
    assert list(tmp_path.iterdir()) == []


def test_an_emptied_form_field_means_the_default(tmp_path):
    """The run form sends "" for a text field the user cleared: the bundled data, a new run."""
    config = validate_config(data_path="", resume="", output_dir=str(tmp_path))
    assert config.data_path is None and config.resume is None

"""Sweep parameters: each bad value is refused with a message naming it and the allowed values;
the run form is made of the same declaration."""

import inspect
import math

import pytest
import torch

from irismodel.parameters import (
    MAX_HIDDEN_DIM,
    MAX_HIDDEN_DIMS,
    MAX_LEARNING_RATE,
    MAX_SEEDS,
    MAX_SPLIT_SEED,
    MAX_SPLITS,
    SweepConfig,
    run_form,
    sweep_parameters,
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
    # strict: a float is no integer, even a whole one, from Python as from JSON
    "hidden_dims whole float": ({"hidden_dims": [9.0]}, r"hidden_dims: 9\.0 is not an integer"),
    "hidden_dims a bool": ({"hidden_dims": [True]}, r"hidden_dims: True is not an integer"),
    "hidden_dims not a list": (
        {"hidden_dims": 8},
        r"hidden_dims: expected integers as text \(8\.\.14 or 0, 3, 7\.\.9\) or a list, got 8",
    ),
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
    "learning_rate a string": (
        {"learning_rate": "0.1"},
        r"learning_rate: '0\.1' is not allowed; it must be a positive finite number",
    ),
    "epochs 0": ({"epochs": 0}, r"epochs: 0 is not allowed.*integer in 1\.\.1,000,000"),
    "epochs negative": ({"epochs": -5}, r"epochs: -5 is not allowed.*integer in 1\.\.1,000,000"),
    "epochs fractional": ({"epochs": 2.5}, r"epochs: 2\.5 is not allowed.*integer in 1\.\."),
    "epochs a whole float": ({"epochs": 30.0}, r"epochs: 30\.0 is not allowed.*integer in 1\.\."),
    "epochs a string": ({"epochs": "30"}, r"epochs: '30' is not allowed.*integer in 1\.\."),
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
    "standardize not a bool": (
        {"standardize": "yes"},
        r"standardize: 'yes' is not allowed; it must be true or false",
    ),
    "force a number": ({"force": 1}, r"force: 1 is not allowed; it must be true or false"),
    "positive_class a list": (
        {"positive_class": [1]},
        r"positive_class: \[1\] is not allowed; it must be a class name or an integer code",
    ),
    "positive_class a bool": ({"positive_class": True}, r"positive_class: True is not allowed"),
    "device unknown": (
        {"device": "tpu"},
        r"device: unknown device 'tpu'; valid are auto, cpu, cuda, cuda:N",
    ),
    "device malformed cuda": ({"device": "cuda:x"}, r"device: unknown device 'cuda:x'"),
    "device not text": ({"device": 0}, r"device: 0 is not allowed; it must be one of auto, cpu, "),
    "data_path not text": (
        {"data_path": 5},
        r"data_path: 5 is not allowed; it must be text, or empty for the default",
    ),
    "shard_size 0": ({"shard_size": 0}, r"shard_size: 0 is not allowed.*1\.\.100,000"),
    "reference_seeds negative": (
        {"reference_seeds": -1},
        r"reference_seeds: -1 is not allowed; it must be an integer in 0\.\.1,000",
    ),
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
    "resume not a run id": (
        {"resume": "../x"},
        r"resume: '\.\./x' is not allowed; it must be the id of the unfinished run to finish",
    ),
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
        SweepConfig(**{"output_dir": str(output), **parameters})
    assert not output.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_cuda_is_refused(tmp_path, device):
    """Asking for CUDA on a machine without it is refused before training, suggesting cpu/auto."""
    with pytest.raises(ValueError, match=r"device: .* no CUDA device.*use 'cpu' or 'auto'"):
        SweepConfig(device=device, output_dir=str(tmp_path))


@pytest.mark.skipif(NO_CUDA, reason="this machine has no CUDA")
def test_missing_cuda_index_is_refused(tmp_path):
    """A CUDA index beyond the machine's devices is refused, naming the ones that exist."""
    with pytest.raises(ValueError, match=r"device: 'cuda:99' does not exist.*cuda:0 to"):
        SweepConfig(device="cuda:99", output_dir=str(tmp_path))


def test_output_dir_that_is_a_file_is_refused(tmp_path):
    """An output_dir that is a file, or lies under one, is refused and left as it was."""
    a_file = tmp_path / "results.txt"
    a_file.write_text("keep me")
    with pytest.raises(ValueError, match=r"output_dir: .*results\.txt' is a file; it must be a"):
        SweepConfig(output_dir=str(a_file))
    with pytest.raises(ValueError, match=r"output_dir: .* cannot be created: .* is a file"):
        SweepConfig(output_dir=str(a_file / "sub"))
    assert a_file.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.txt"]


@pytest.mark.parametrize("location", ["/proc/iris-sweep-out", "/proc/iris-sweep-out/deeper"])
def test_output_dir_that_cannot_be_written_is_refused(location):
    """An output_dir where no file can be created (under /proc, even for root) is refused."""
    with pytest.raises(ValueError, match=r"output_dir: '/proc/iris-sweep-out.*' is not writable"):
        SweepConfig(output_dir=location)


@pytest.mark.parametrize("location", ["", "   ", 7])
def test_output_dir_that_is_no_path_is_refused(location):
    """An empty or non-string output_dir is refused by name."""
    with pytest.raises(ValueError, match=r"output_dir: expected a folder path or URI"):
        SweepConfig(output_dir=location)


def test_valid_parameters_give_a_normalised_config(tmp_path):
    """Valid parameters come back as tuples and floats, the device resolved, nothing written."""
    output = tmp_path / "not-yet"
    config = SweepConfig(
        hidden_dims=[9, 8],
        optimizers=["sgd", "adam"],
        split_seeds="0",
        seeds=[3, 1],
        learning_rate=1,
        epochs=5,
        test_size=0,
        device="cpu",
        output_dir=str(output),
    )
    assert config.hidden_dims == (9, 8) and all(type(h) is int for h in config.hidden_dims)
    assert config.optimizers == ("sgd", "adam")
    assert list(config.seeds) == [1, 3] and config.parameters()["seeds"] == "1, 3"
    assert config.learning_rate == 1.0 and type(config.learning_rate) is float
    assert config.test_size == 0.0
    assert config.resolved_device == "cpu"
    assert config.parameters()["hidden_dims"] == [9, 8]
    assert SweepConfig(**config.parameters()) == config  # what runs store validates again
    assert not output.exists()


def test_defaults_are_valid(tmp_path):
    """The defaults, the notebook's set-up, pass validation."""
    config = SweepConfig(output_dir=str(tmp_path))
    assert config == SweepConfig(output_dir=str(tmp_path))
    assert config.resolved_device == ("cuda" if torch.cuda.is_available() else "cpu")


def test_largest_learning_rate_is_accepted(tmp_path):
    """The largest allowed learning rate passes: divergence is data, not a validation error."""
    config = SweepConfig(learning_rate=MAX_LEARNING_RATE, output_dir=str(tmp_path))
    assert config.learning_rate == MAX_LEARNING_RATE


def test_an_emptied_form_field_means_the_default(tmp_path):
    """The run form sends "" for a field the user cleared: the bundled data, a new run, the
    default shard size."""
    config = SweepConfig(data_path="", resume="", shard_size="", output_dir=str(tmp_path))
    assert config.data_path is None and config.resume is None and config.shard_size is None


def test_the_reference_check_is_no_longer_than_the_run():
    """reference_epochs beyond the run's epochs is lowered to them."""
    config = SweepConfig(epochs=30, reference_epochs=100, output_dir="/tmp")
    assert config.reference_epochs == 30


def test_secrets_of_output_dir_are_redacted_in_the_stored_parameters(tmp_path):
    """What runs store and log of the parameters holds no secret of an output URI."""
    config = SweepConfig(output_dir=str(tmp_path))
    parameters = config.parameters()
    assert parameters["output_dir"] == str(tmp_path) and parameters["seeds"] == "0..399"
    assert parameters["hidden_dims"] == list(range(8, 15))


def test_the_run_form_declares_each_parameter_with_its_limits():
    """The run form holds every parameter with its description and the model's own limits;
    optional ones accept null, so an untouched form validates."""
    form = run_form()
    assert list(form) == list(SweepConfig.model_fields)
    assert (form["epochs"]["minimum"], form["epochs"]["maximum"]) == (1, 1_000_000)
    assert form["shard_size"]["anyOf"][1] == {"type": "null"}
    assert form["data_path"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
    assert form["optimizers"]["items"]["enum"] == list(OPTIMIZER_NAMES.split(", "))
    assert all("\n" not in field["description"] for field in form.values())
    # each limit a description states is the one checked
    for name, field in form.items():
        for kind in field.get("anyOf", [field]):
            for bound in (kind.get("maximum"), kind.get("minimum")):
                if bound is not None:
                    spelled = {str(bound), f"{bound:,}", f"{bound:.2g}", f"{bound:g}"}
                    assert any(text in field["description"] for text in spelled), (name, bound)
    ranges = {
        "hidden_dims": (MAX_HIDDEN_DIM,),
        "seeds": (MAX_SEEDS,),
        "split_seeds": (MAX_SPLIT_SEED, MAX_SPLITS),
    }
    for name, bounds in ranges.items():
        for bound in bounds:
            assert (
                str(bound) in form[name]["description"] or f"{bound:,}" in form[name]["description"]
            ), (name, bound)
    assert MAX_HIDDEN_DIMS >= MAX_HIDDEN_DIM  # every size can be swept at once


def test_sweep_parameters_gives_a_function_the_parameters_and_their_docs():
    """The decorated function's signature is the parameters, keyword-only, at their form
    defaults; its docstring lists them with their descriptions."""

    @sweep_parameters
    def sweep(**parameters):
        """Run."""
        return parameters

    signature = inspect.signature(sweep)
    assert list(signature.parameters) == list(SweepConfig.model_fields)
    assert {p.kind for p in signature.parameters.values()} == {inspect.Parameter.KEYWORD_ONLY}
    assert signature.parameters["hidden_dims"].default == "8..14"
    assert signature.parameters["optimizers"].default == ["sgd", "manual", "manual-no-zero-grad"]
    assert "    epochs: Full-batch training epochs per model" in sweep.__doc__

"""Each run compared at publication with the last published run of the same parameters."""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from irismodel.parameters import SweepConfig
from irismodel.provenance import provenance
from irismodel.store import read_results
from irismodel.store.layout import MANIFEST
from irismodel.sweep import run_sweep

SAME = dict(seeds="0..2", hidden_dims=[8], optimizers=["sgd"], epochs=8, device="cpu")


def _run(root: Path, name: str, day: int, **changes) -> tuple[str, dict]:
    config = SweepConfig(**{**SAME, **changes}, output_dir=str(root))
    folder = run_sweep(config, name, datetime(2026, 1, day, tzinfo=UTC))
    return folder, json.loads((Path(folder) / MANIFEST).read_text())


@pytest.fixture(scope="module")
def location(tmp_path_factory) -> dict[str, tuple[str, dict]]:
    """One location: run a, a run of other parameters started later, then b like a."""
    root = tmp_path_factory.mktemp("location")
    return {
        "a": _run(root, "run-a", 1),
        "other": _run(root, "run-other", 2, seeds="0..1"),
        "b": _run(root, "run-b", 3),
    }


def test_second_run_of_the_same_parameters_is_identical_to_the_first(location):
    """Run b's manifest names run a as its previous run and says every model is identical."""
    (a_folder, _), (b_folder, b) = location["a"], location["b"]
    compared = b["comparison"]
    assert compared["previous_run"] == Path(a_folder).name
    assert compared["verdict"] == "identical", compared
    assert compared["matched"] == len(read_results(b_folder)) == len(read_results(a_folder))
    assert compared["changed_rows"] == compared["outcome_changes"] == 0
    assert compared["loss_difference"] == 0 and compared["environment"] == {}
    assert "comparison_same_data" not in b  # the last run of the same data is run a too


def test_the_previous_run_is_of_the_same_parameters_not_the_latest(location):
    """The run of other parameters, started between a and b, is never b's previous run."""
    other_folder, other = location["other"]
    assert location["b"][1]["comparison"]["previous_run"] != Path(other_folder).name
    assert other["comparison"]["previous_run"] is None  # nothing before it like it


def test_a_first_run_says_there_is_no_previous_run(location):
    """The first run's manifest says there was no earlier run of its parameters to compare."""
    compared = location["a"][1]["comparison"]
    assert compared["previous_run"] is None and compared["verdict"] is None
    assert "no earlier published run of the same parameters" in compared["reason"]


def test_the_manifest_names_the_code_libraries_and_hardware(location):
    """`provenance` in the manifest is this process's provenance (as JSON)."""
    stored = location["b"][1]["provenance"]
    here = json.loads(json.dumps(provenance()))
    assert stored == here
    assert stored["torch"] is not None and stored["cpu_count"] > 0


def test_a_comparison_that_fails_records_its_error_and_publishes(tmp_path):
    """A previous run whose part file is unreadable: the run publishes, the error is recorded."""
    first, _ = _run(tmp_path, "run-1", 1)
    part = next(Path(first).glob("*.parquet"))
    part.write_bytes(b"not parquet")
    folder, manifest = _run(tmp_path, "run-2", 2)
    assert manifest["status"] == "complete" and len(read_results(folder)) > 0
    compared = manifest["comparison"]
    assert compared["previous_run"] == Path(first).name and compared["verdict"] is None
    assert compared["error"].startswith("ArrowInvalid: Parquet magic bytes not found"), compared

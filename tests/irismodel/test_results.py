"""Results files: the schema, the Parquet round trip, atomic writes, many runs read as one."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow.parquet as pq
import pytest

from irismodel import results
from irismodel.parameters import SweepConfig
from irismodel.sweep import run_sweep


def _write(output_dir, run_id, test_size=0.25, optimizer="sgd"):
    """Publish a real run of two models; return its folder and its rows as dicts."""
    config = SweepConfig(
        hidden_dims=[8],
        optimizers=[optimizer],
        split_seeds="0",
        seeds=[0, 1],
        epochs=30,
        test_size=test_size,
        output_dir=str(output_dir),
        device="cpu",
    )
    path = run_sweep(config, run_id, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    table = pq.read_table(results.list_result_files(path)[0])
    return path, table.to_pylist()


def test_round_trip_keeps_schema_and_values(tmp_path):
    """A written file reads back with the exact schema, metadata and values."""
    path, rows = _write(tmp_path, "run-a")
    (part,) = results.list_result_files(path)
    table = pq.read_table(part)
    assert table.schema.equals(results.SCHEMA, check_metadata=False)
    meta = results.file_metadata(path)
    assert meta["schema_version"] == results.SCHEMA_VERSION
    assert meta["status"] == results.STATUS_COMPLETE and meta["failed"] == []
    assert meta["parameters"]["seeds"] == "0..1"
    assert {"torch", "prefect", "pyarrow", "python"} <= set(meta["versions"])
    frame = results.read_results(str(tmp_path))
    assert list(frame.columns) == list(results.COLUMNS)
    for row, (_, read) in zip(rows, frame.iterrows(), strict=True):
        np.testing.assert_array_equal(np.asarray(read.loss_curve), np.float32(row["loss_curve"]))
        assert read.final_train_loss == row["loss_curve"][-1]
        assert read.test_accuracy == row["test_accuracy"]
    assert str(frame.run_started_at.dtype) == "datetime64[us, UTC]"


def test_two_runs_read_as_one_table(tmp_path):
    """Two runs in one location read back as one table, filterable by run."""
    _write(tmp_path, "run-a")
    _write(tmp_path, "run-b", optimizer="manual")
    frame = results.read_results(str(tmp_path))
    assert sorted(frame.flow_run_id.unique()) == ["run-a", "run-b"]
    assert len(frame) == 4
    only_b = results.read_results(str(tmp_path), flow_run_ids=["run-b"])
    assert set(only_b.optimizer) == {"manual"} and len(only_b) == 2


def test_uri_location_round_trip(tmp_path):
    """A `file://` URI works as an output location for writing and reading."""
    uri = f"file://{tmp_path}/uri-out"
    path, _ = _write(uri, "run-u")
    assert path.startswith(str(tmp_path / "uri-out"))
    assert len(results.read_results(uri)) == 2


def test_no_test_split_gives_null_test_metrics(tmp_path):
    """With test_size=0 every test metric is null and the training metrics are set."""
    _write(tmp_path, "run-0", test_size=0.0)
    frame = results.read_results(str(tmp_path))
    metrics = frame.filter(like="test_").drop(columns=["test_size", "n_test_positive"])
    assert metrics.isna().all().all() and (frame.n_test_positive == 0).all()
    assert frame.train_accuracy.notna().all() and (frame.n_test == 0).all()


def test_write_never_replaces_a_file_and_leaves_no_temporary(tmp_path):
    """Writing a name that exists fails, and a write leaves only the published file."""
    path, rows = _write(tmp_path, "run-a")
    table = pq.read_table(results.list_result_files(path)[0])
    name = results.file_name("copy", datetime(2026, 1, 2, tzinfo=UTC))
    results.write_results(table, str(tmp_path), name)
    with pytest.raises(FileExistsError, match="refusing to replace"):
        results.write_results(table, str(tmp_path), name)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [name, ".staging", path.rsplit("/", 1)[1]]
    )


def test_file_names_stay_inside_the_location():
    """Run ids cannot smuggle path parts into file names."""
    name = results.file_name("../../etc/x y", datetime(2026, 1, 1, tzinfo=UTC))
    assert "/" not in name and ".." not in name
    assert name.startswith(results.FILE_PREFIX) and name.endswith(results.FILE_SUFFIX)


def test_missing_location_is_a_clear_error(tmp_path):
    """Reading a location that does not exist names it."""
    with pytest.raises(results.ResultsError, match="no such location"):
        results.read_results(str(tmp_path / "absent"))


@pytest.mark.parametrize("content", ["[1, 2]", '"complete"', "[" * 100_000 + "]" * 100_000])
def test_a_manifest_that_is_not_a_json_object_is_named(tmp_path, content):
    """A run's manifest that is valid JSON but no object (or nested past any stack) is an error
    naming the run folder, from the reader and from the metadata reader alike."""
    folder = tmp_path / "iris-sweep-20260101T000000Z-abc"
    folder.mkdir()
    (folder / results.MANIFEST).write_text(content)
    with pytest.raises(results.ResultsError, match=f"{folder.name}' has an unreadable _run.json"):
        results.read_results(str(tmp_path))
    with pytest.raises(results.ResultsError, match=f"{folder.name}' has no readable _run.json"):
        results.file_metadata(str(folder))

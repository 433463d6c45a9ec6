"""The reader: published runs listed and checked, every schema version read, foreign files named."""

import shutil
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from _store_files import (
    STARTED,
    config,
    file_name,
    published,
    synthetic_table,
    unfinished,
    write_shards,
    write_single_file,
)

from irismodel.store import (
    ResultsError,
    count_models,
    file_metadata,
    list_result_files,
    publish_run,
    read_results,
)
from irismodel.store.layout import (
    MANIFEST,
    META_SCHEMA_VERSION,
    STAGING,
    STATUS_COMPLETE,
)
from irismodel.store.reader import Source, read_models
from irismodel.store.schema import (
    ADDED_IN_2,
    ADDED_IN_3,
    COLUMNS,
    SCHEMA,
    SCHEMA_V1,
    SCHEMA_V2,
    SCHEMA_VERSION,
)


def _small(folder, **overrides):
    return config(folder, **{"hidden_dims": [8], "optimizers": ["sgd"], **overrides})


def test_round_trip_keeps_schema_and_values(tmp_path):
    """A published part reads back with the exact schema, metadata and values."""
    path = published(_small(tmp_path, seeds=[0, 1]), "run-a")
    (part,) = list_result_files(path)
    written = pq.read_table(part)
    assert written.schema.equals(SCHEMA, check_metadata=False)
    meta = file_metadata(path)
    assert meta["schema_version"] == SCHEMA_VERSION
    assert meta["status"] == STATUS_COMPLETE and meta["failed"] == []
    assert meta["parameters"]["seeds"] == "0..1"
    assert {"torch", "prefect", "pyarrow", "python"} <= set(meta["versions"])
    assert file_metadata(part)["parameters"] == meta["parameters"]
    frame = read_results(str(tmp_path))
    assert list(frame.columns) == list(COLUMNS)
    for row, (_, read) in zip(written.to_pylist(), frame.iterrows(), strict=True):
        np.testing.assert_array_equal(np.asarray(read.loss_curve), np.float32(row["loss_curve"]))
        assert read.final_train_loss == row["final_train_loss"] and read.seed == row["seed"]
    assert str(frame.run_started_at.dtype) == "datetime64[us, UTC]"


def test_two_runs_read_as_one_table_filterable_by_run(tmp_path):
    """Two runs in one location read back as one table; `flow_run_ids` keeps only those."""
    published(_small(tmp_path, seeds=[0, 1]), "run-a")
    published(_small(tmp_path, seeds=[0, 1], optimizers=["manual"]), "run-b")
    frame = read_results(str(tmp_path))
    assert sorted(frame.flow_run_id.unique()) == ["run-a", "run-b"] and len(frame) == 4
    only_b = read_results(str(tmp_path), flow_run_ids=["run-b"])
    assert set(only_b.optimizer) == {"manual"} and len(only_b) == 2
    with pytest.raises(ValueError, match=r"flow_run_ids: expected a list of run ids, got the "
                                         r"string 'run-a'"):  # fmt: skip
        read_results(str(tmp_path), flow_run_ids="run-a")
    assert len(read_results(str(tmp_path), flow_run_ids=[])) == 0


def test_count_models_gives_the_rows_of_a_run_or_a_location(tmp_path):
    """count_models counts the rows of one run's folder, or of every run in a location."""
    path = published(_small(tmp_path, seeds=[0, 1, 2]), "run-a")
    published(_small(tmp_path, seeds=[0, 1], optimizers=["manual"]), "run-b")
    assert count_models(path) == len(read_results(path)) == 3
    assert count_models(str(tmp_path)) == len(read_results(str(tmp_path))) == 5


def test_uri_location_round_trip(tmp_path):
    """A `file://` URI works as an output location for writing and reading."""
    uri = f"file://{tmp_path}/uri-out"
    path = published(_small(uri, seeds=[0, 1]), "run-u")
    assert path.startswith(str(tmp_path / "uri-out"))
    assert len(read_results(uri)) == 2


def test_no_test_split_gives_null_test_metrics(tmp_path):
    """With test_size=0 every test metric reads back null and the training metrics are set."""
    from irismodel.sweep import run_sweep

    run_sweep(_small(tmp_path, seeds=[0, 1], epochs=30, test_size=0.0), "run-0", STARTED)
    frame = read_results(str(tmp_path))
    metrics = frame.filter(like="test_").drop(columns=["test_size", "n_test_positive"])
    assert metrics.isna().all().all() and (frame.n_test_positive == 0).all()
    assert frame.train_accuracy.notna().all() and (frame.n_test == 0).all()


def test_bad_locations_are_refused_naming_the_parameter(tmp_path):
    """An empty location is refused (it would read the current folder), a URI no file system
    opens is a `location` error, and a missing location is named."""
    for empty in ("", "  "):
        with pytest.raises(ValueError, match=r"location: expected a results folder"):
            read_results(empty)
    with pytest.raises(ValueError, match=r"location: cannot open 'ftp://host/results'"):
        read_results("ftp://host/results")
    with pytest.raises(ResultsError, match="no such location"):
        read_results(str(tmp_path / "absent"))


def test_a_reader_never_sees_an_unpublished_run(tmp_path):
    """Shards of an unfinished run are invisible to every reader until the run is published;
    `include_unfinished` shows them as partial."""
    folder = tmp_path / "out"
    sweep, opened, shards = unfinished(folder, "unfinished")
    assert len(list((folder / STAGING).glob("*/*.parquet"))) == 2
    assert _readers_see(folder) == {"read_results": 0, "files": 0}
    partial = read_results(str(folder), include_unfinished=True)
    assert len(partial) == 6 and (partial["run_status"] == "partial").all()
    write_shards(opened, sweep, shards[2:])
    assert _readers_see(folder)["read_results"] == 0  # every shard written, not yet published
    path = publish_run(opened.place, [], sweep, "unfinished")
    seen = _readers_see(folder)
    assert set(seen.values()) - {len(shards)} == {28}, seen
    assert file_metadata(path)["status"] == "complete"
    assert not any((folder / STAGING).iterdir())


def _readers_see(folder: Path) -> dict[str, int]:
    counts = {"read_results": len(read_results(str(folder)))}
    counts["files"] = len(list_result_files(str(folder)))
    if any(folder.glob("iris-sweep-*/*.parquet")):
        counts["pandas"] = len(pd.read_parquet(folder))
        counts["pyarrow"] = pads.dataset(str(folder), format="parquet").count_rows()
        query = f"select count(*) from read_parquet('{folder}/iris-sweep-*/*.parquet')"
        counts["duckdb"] = duckdb.sql(query).fetchall()[0][0]
        counts["polars"] = pl.read_parquet(f"{folder}/iris-sweep-*/*.parquet").height
    return counts


def _as_version(folder: Path, version: str) -> None:
    """Rewrite a run folder's parts as schema version `version` wrote them."""
    schema = {"1": SCHEMA_V1, "2": SCHEMA_V2}[version]
    for part in folder.glob("*.parquet"):
        table = pq.read_table(part)
        meta = {**table.schema.metadata, META_SCHEMA_VERSION: version.encode()}
        pq.write_table(table.select(schema.names).replace_schema_metadata(meta), part)


def test_every_schema_version_reads_with_the_columns_added_since_null(tmp_path):
    """A version 1 single file and a version 2 run folder read beside a current run: the columns
    added since are null, every other value as written; the report's reader takes them too."""
    folder = tmp_path / "out"
    current = read_results(published(_small(folder), "new"))
    old = current.drop(columns=list(ADDED_IN_2 + ADDED_IN_3)).assign(flow_run_id="v1")
    table = pa.Table.from_pandas(old, schema=SCHEMA_V1, preserve_index=False)
    pq.write_table(table.replace_schema_metadata({META_SCHEMA_VERSION: "1"}),
                   folder / file_name("v1", STARTED))  # fmt: skip
    _as_version(Path(published(_small(folder), "v2", datetime(2026, 1, 3, tzinfo=UTC))), "2")
    frame = read_results(str(folder))
    assert list(frame.columns) == list(COLUMNS)
    assert frame.groupby("flow_run_id").size().to_dict() == {"new": 7, "v1": 7, "v2": 7}
    v1, v2 = frame[frame.flow_run_id == "v1"], frame[frame.flow_run_id == "v2"]
    assert v1["shard"].isna().all() and v1["n_train_positive"].isna().all()
    assert v2["shard"].notna().all()
    for column in ADDED_IN_3:
        assert v2[column].isna().all() and v1[column].isna().all(), column
    assert (v1.seed.to_numpy() == current.seed.to_numpy()).all()
    files = list_result_files(str(folder))
    models = read_models(Source(files, pa.fs.LocalFileSystem()), None)
    assert len(models) == 21 and models["outcome"].isna().all()
    assert models["optimizer"].dtype == "category" and models["n_train_positive"].dtype == float


def test_a_published_run_missing_a_part_is_an_error_naming_it(tmp_path):
    """A published run folder that lost a part file is not read as if it were whole."""
    path = published(config(tmp_path, shard_size=4), "run")
    next(Path(path).glob("h8-sgd-*.parquet")).unlink()
    with pytest.raises(ResultsError, match=r"holds 7 part files of the 8 its _run\.json lists; "
                                           r"the run is incomplete"):  # fmt: skip
        read_results(str(tmp_path))


def test_a_run_without_its_manifest_is_named_or_skipped(tmp_path):
    """A run folder whose _run.json was removed is never read silently: the reader names it, or
    with `on_foreign="skip"` leaves that run out with a warning and reads the others."""
    folder = tmp_path / "out"
    bare = Path(published(_small(folder), "bare"))
    published(_small(folder), "whole", datetime(2026, 1, 3, tzinfo=UTC))
    (bare / MANIFEST).unlink()
    message = rf"results: the run folder '.*{bare.name}' has no {MANIFEST}"
    with pytest.raises(ResultsError, match=message):
        read_results(str(folder))
    with pytest.warns(UserWarning, match=rf"skipping .*{bare.name}: {message}"):
        frame = read_results(str(folder), on_foreign="skip")
    assert set(frame.flow_run_id) == {"whole"} and len(frame) == 7


@pytest.mark.parametrize("content", ["[1, 2]", '"complete"', "[" * 100_000 + "]" * 100_000])
def test_a_manifest_that_is_not_a_json_object_is_named(tmp_path, content):
    """A run's manifest that is valid JSON but no object (or nested past any stack) is an error
    naming the run folder, from the reader and from the metadata reader alike."""
    folder = tmp_path / "iris-sweep-20260101T000000Z-abc"
    folder.mkdir()
    (folder / MANIFEST).write_text(content)
    for read in (lambda: read_results(str(tmp_path)), lambda: file_metadata(str(folder))):
        with pytest.raises(ResultsError, match=f"{folder.name}' has no readable _run.json"):
            read()


@pytest.mark.parametrize("how", ["another run's part", "a copy under a new name"])
def test_a_part_that_is_not_its_run_s_shard_is_refused_by_the_readers(tmp_path, how):
    """Readers check each part's run id and shard against its folder and name, and name it."""
    from irismodel.report import report_of

    folder = tmp_path / "out"
    mine = Path(published(_small(folder, shard_size=4), "mine"))
    if how == "another run's part":
        theirs = Path(published(_small(tmp_path / "theirs", shard_size=4), "theirs"))
        shutil.copy(theirs / "h8-sgd-0000.parquet", mine / "h8-sgd-0000.parquet")
        expected = r"h8-sgd-0000.parquet' belongs to run 'theirs', not to the run of its folder"
    else:
        (mine / "h8-sgd-0001.parquet").unlink()
        shutil.copy(mine / "h8-sgd-0000.parquet", mine / "h8-sgd-0001.parquet")
        expected = r"h8-sgd-0001.parquet' holds shard 'h8-sgd-0000', not the shard its name says"
    with pytest.raises(ValueError, match=expected):
        read_results(str(folder))
    with pytest.raises(ValueError, match=expected):
        report_of(str(mine), run_ids=["mine"])


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("garbage", r"results: cannot read '.*zz-foreign\.parquet': not a readable Parquet"),
        ("truncated", r"results: cannot read '.*zz-foreign\.parquet': not a readable Parquet"),
        ("empty", r"results: cannot read '.*zz-foreign\.parquet': not a readable Parquet"),
        ("other table", r"results: '.*zz-foreign\.parquet' is not an iris-sweep results file"),
        ("missing column", r"results: '.*zz-foreign\.parquet' does not match the results schema"),
    ],
)
def test_foreign_or_corrupt_parquet_is_named_or_skipped(tmp_path, kind, message):
    """A foreign or corrupt .parquet raises ResultsError naming it, or is skipped with a warning."""
    valid = write_single_file(synthetic_table("good-run"), str(tmp_path), "iris-sweep-good.parquet")
    foreign = tmp_path / "zz-foreign.parquet"
    if kind == "garbage":
        foreign.write_bytes(b"this is not parquet at all")
    elif kind == "truncated":
        whole = Path(valid).read_bytes()
        foreign.write_bytes(whole[: len(whole) // 2])
    elif kind == "empty":
        foreign.write_bytes(b"")
    elif kind == "other table":
        pd.DataFrame({"a": [1, 2]}).to_parquet(foreign)
    else:  # an iris-sweep file that lost a column: its metadata says iris-sweep, its schema not
        pq.write_table(synthetic_table("x").drop_columns(["seed"]), foreign)

    with pytest.raises(ResultsError, match=message):
        read_results(str(tmp_path))
    with pytest.warns(UserWarning, match=rf"skipping .*zz-foreign\.parquet: {message}"):
        frame = read_results(str(tmp_path), on_foreign="skip")
    assert set(frame.flow_run_id) == {"good-run"} and len(frame) == 4
    assert list_result_files(str(tmp_path)) == sorted([valid, str(foreign)])

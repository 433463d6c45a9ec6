"""Shards train, evaluate and write their own rows; the rows are the same however seeds are cut."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

import irismodel.sweep as sweep
from irismodel import results, runs
from irismodel.config import validate_config
from irismodel.data import load_dataset, split_dataset
from irismodel.engine import predict_proba, train_reference
from irismodel.metrics import binary_metrics

STARTED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
ROW_KEY = ["hidden_dim", "optimizer", "seed"]
RUN_COLUMNS = {"flow_run_id", "run_started_at", "worker", "shard", "train_seconds"}


def _config(folder: Path, **overrides):
    params = dict(
        hidden_dims=[8, 11],
        optimizers=["sgd", "adam"],
        split_seeds="0",
        seeds=[0, 1, 2, 3, 4, 5, 6],
        epochs=80,
        output_dir=str(folder),
        device="cpu",
    )
    return validate_config(**{**params, **overrides})


def _by_model(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(ROW_KEY).reset_index(drop=True)


def _assert_same_models(first: pd.DataFrame, second: pd.DataFrame) -> None:
    first, second = _by_model(first), _by_model(second)
    assert len(first) == len(second) > 0
    for column in results.COLUMNS:
        if column in RUN_COLUMNS:
            continue
        if column == "loss_curve":
            for a, b in zip(first[column], second[column], strict=True):
                assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
        else:
            pd.testing.assert_series_equal(first[column], second[column], check_exact=True)


def test_rows_are_bit_identical_whatever_the_shard_size(tmp_path):
    """A configuration in one shard or cut into shards of 1, 2 or 3 seeds gives the same rows."""
    whole = sweep.run_sweep(_config(tmp_path / "whole"), "whole", STARTED)
    reference = results.read_results(whole)
    assert reference["shard"].nunique() == 4  # one shard per configuration
    for size in (1, 2, 3):
        path = sweep.run_sweep(_config(tmp_path / f"s{size}", shard_size=size), f"s{size}")
        frame = results.read_results(path)
        assert frame["shard"].nunique() == 4 * -(-7 // size)
        _assert_same_models(frame, reference)


def test_rows_match_an_independent_evaluation(tmp_path):
    """Each row's curve and metrics equal the reference engine's model evaluated independently."""
    config = _config(tmp_path, hidden_dims=[8], optimizers=["sgd"], seeds=[0, 1, 2], epochs=40,
                     test_size=0.3, split_seeds="4")  # fmt: skip
    frame = _by_model(results.read_results(sweep.run_sweep(config, "run")))
    split = split_dataset(load_dataset(), test_size=0.3, split_seed=4)
    reference = train_reference(split.x_train, split.y_train, 8, "sgd", [0, 1, 2], 0.1, 40)
    test_scores = binary_metrics(predict_proba(reference.parameters, split.x_test), split.y_test)
    for i, row in frame.iterrows():
        assert (row["hidden_dim"], row["optimizer"], row["seed"]) == (8, "sgd", i)
        np.testing.assert_allclose(row["loss_curve"], reference.loss_curves[i], rtol=1e-5)
        assert row["test_accuracy"] == test_scores["accuracy"][i]
        assert row["n_train"] + row["n_test"] == 150 and not row["diverged"]
        assert row["n_train_positive"] == split.y_train.sum()
        assert row["n_test_positive"] == split.y_test.sum()
        assert row["final_train_loss"] == row["loss_curve"][-1]


def _unfinished(folder: Path, run_id: str, **overrides):
    """Open a run and write only its first two shards, as a run killed mid-sweep leaves it."""
    config = _config(folder, shard_size=3, **overrides)
    opened = runs.open_run(config, run_id, STARTED)
    split = split_dataset(load_dataset())
    shards = runs.plan_shards(config)
    for shard in shards[:2]:
        sweep.run_shard(split, shard, sweep.context_of(opened, config))
    return config, opened, shards


def _readers_see(folder: Path) -> dict[str, int]:
    files = results.list_result_files(str(folder))
    counts = {"read_results": len(results.read_results(str(folder))), "files": len(files)}
    if any(folder.glob("iris-sweep-*/*.parquet")):
        counts["pandas"] = len(pd.read_parquet(folder))
        counts["pyarrow"] = pads.dataset(str(folder), format="parquet").count_rows()
        query = f"select count(*) from read_parquet('{folder}/iris-sweep-*/*.parquet')"
        counts["duckdb"] = duckdb.sql(query).fetchall()[0][0]
        counts["polars"] = pl.read_parquet(f"{folder}/iris-sweep-*/*.parquet").height
    return counts


def test_a_reader_never_sees_an_unpublished_run(tmp_path):
    """Shards of an unfinished run are invisible to every reader until the run is published."""
    folder = tmp_path / "out"
    config, opened, shards = _unfinished(folder, "unfinished")
    assert len(list((folder / results.STAGING).glob("*/*.parquet"))) == 2
    assert _readers_see(folder) == {"read_results": 0, "files": 0}
    unfinished = results.read_results(str(folder), include_unfinished=True)
    assert len(unfinished) == 6 and (unfinished["run_status"] == "partial").all()

    split = split_dataset(load_dataset())
    for shard in shards[2:]:
        sweep.run_shard(split, shard, sweep.context_of(opened, config))
    assert _readers_see(folder)["read_results"] == 0  # every shard written, not yet published
    path = runs.publish_run(opened.place, failed=[])
    seen = _readers_see(folder)
    assert set(seen.values()) - {len(shards)} == {28}, seen
    assert results.file_metadata(path)["status"] == "complete"
    assert not any((folder / results.STAGING).iterdir())


def test_resume_keeps_checked_shards_and_retrains_the_rest(tmp_path, monkeypatch):
    """A resumed run trains only its missing shards and reuses the written ones, bit for bit."""
    folder = tmp_path / "out"
    config, opened, shards = _unfinished(folder, "killed")
    written = {p.name: p.read_bytes() for p in (folder / results.STAGING).glob("*/*.parquet")}
    reopened = runs.open_run(config, "killed")
    assert reopened.resumed and reopened.started_at == opened.started_at
    assert reopened.finished == {shards[0].name, shards[1].name}

    trained = []
    real = sweep.train_batched
    monkeypatch.setattr(
        sweep,
        "train_batched",
        lambda *a, **k: trained.append((a[2], a[3], tuple(a[4]))) or real(*a, **k),
    )
    path = sweep.run_sweep(config, "killed")
    assert len(trained) == len(shards) - 2
    first = (shards[0].hidden_dim, shards[0].optimizer, tuple(shards[0].seeds(config)))
    assert first not in trained
    for name, blob in written.items():
        assert (Path(path) / name).read_bytes() == blob
    fresh = sweep.run_sweep(_config(tmp_path / "fresh", shard_size=3), "fresh")
    _assert_same_models(results.read_results(path), results.read_results(fresh))


@pytest.mark.parametrize(
    "damage",
    ["truncated", "another shard's file", "another run's file", "other epochs", "not parquet"],
)
def test_resume_treats_a_damaged_or_foreign_part_as_missing(tmp_path, damage):
    """A part that does not hold exactly its shard is a miss: trained again, never read as data."""
    folder = tmp_path / "out"
    config, opened, shards = _unfinished(folder, "run")
    staged = folder / results.STAGING / opened.place.folder
    target = staged / shards[0].file_name
    if damage == "truncated":
        target.write_bytes(target.read_bytes()[:-100])
    elif damage == "another shard's file":
        shutil.copy(staged / shards[1].file_name, target)
    elif damage == "another run's file":
        other_config, other, _ = _unfinished(tmp_path / "other", "other-run")
        other_part = tmp_path / "other" / results.STAGING / other.place.folder / target.name
        shutil.copy(other_part, target)
    elif damage == "other epochs":
        table = pq.read_table(target)
        pq.write_table(table.slice(0, 2).replace_schema_metadata(table.schema.metadata), target)
    else:
        target.write_bytes(b"not parquet at all")
    reopened = runs.open_run(config, "run")
    assert reopened.finished == {shards[1].name}
    path = sweep.run_sweep(config, "run")
    frame = results.read_results(path)
    assert len(frame) == 28 and frame["flow_run_id"].eq("run").all()
    fresh = sweep.run_sweep(_config(tmp_path / "fresh", shard_size=3), "fresh")
    _assert_same_models(frame, results.read_results(fresh))


def test_resume_by_id_takes_the_run_s_own_parameters(tmp_path):
    """`resume=<id>` finishes that run with its parameters; other values given are refused."""
    folder = tmp_path / "out"
    _unfinished(folder, "first", learning_rate=0.05)
    resumed = runs.resumed_config(validate_config(output_dir=str(folder), resume="first"))
    assert resumed.learning_rate == 0.05 and resumed.seeds_per_shard == 3
    with pytest.raises(
        ValueError,
        match=r"resume: run first was started with other values of "
        r"learning_rate",
    ):
        runs.resumed_config(
            validate_config(output_dir=str(folder), resume="first", learning_rate=0.2)
        )
    with pytest.raises(
        ValueError,
        match=r"resume: no unfinished run 'nope' in .*; unfinished "
        r"runs there: first",
    ):
        runs.resumed_config(validate_config(output_dir=str(folder), resume="nope"))
    path = sweep.run_sweep(resumed, "ignored-new-id")
    assert results.read_results(path)["flow_run_id"].eq("first").all()
    with pytest.raises(ValueError, match=r"resume: run first is already complete"):
        runs.resumed_config(validate_config(output_dir=str(folder), resume="first"))


def test_version_1_files_still_read_beside_version_2_runs(tmp_path):
    """A single-file run of schema version 1 reads with the columns added since as nulls."""
    folder = tmp_path / "out"
    sweep.run_sweep(_config(folder, hidden_dims=[8], optimizers=["sgd"]), "new")
    new = results.read_results(str(folder))
    old = new.drop(columns=list(results.ADDED_IN_2)).assign(flow_run_id="old")
    import pyarrow as pa

    table = pa.Table.from_pandas(old, schema=results.SCHEMA_V1, preserve_index=False)
    table = table.replace_schema_metadata({results.META_SCHEMA_VERSION: "1"})
    pq.write_table(table, folder / results.file_name("old", STARTED))
    frame = results.read_results(str(folder))
    assert sorted(frame["flow_run_id"].unique()) == ["new", "old"]
    old_rows = frame[frame["flow_run_id"] == "old"]
    assert old_rows["shard"].isna().all() and old_rows["n_train_positive"].isna().all()
    assert len(old_rows) == len(new)


def test_manifest_records_the_run(tmp_path):
    """The published run's `_run.json` names its parameters, shards, status and versions."""
    path = sweep.run_sweep(_config(tmp_path, shard_size=4), "run", STARTED)
    manifest = json.loads((Path(path) / results.MANIFEST).read_text())
    assert manifest["status"] == "complete" and manifest["shards"] == 8
    assert manifest["parameters"]["seeds"] == "0..6"
    assert manifest["started_at"] == STARTED.isoformat()
    assert Path(path).name == results.run_folder_name("run", STARTED)


def test_a_published_run_is_reused_only_by_itself(tmp_path):
    """Opening an id whose run is published with other parameters is refused, never reused."""
    sweep.run_sweep(_config(tmp_path, hidden_dims=[8], optimizers=["sgd"]), "same-id")
    with pytest.raises(ValueError, match=r"run 'same-id': .* is already published by a run with "
                                         r"another id or other parameters"):  # fmt: skip
        sweep.run_sweep(_config(tmp_path, hidden_dims=[9], optimizers=["adam"]), "same-id")


def test_a_published_run_missing_a_part_is_an_error_naming_it(tmp_path):
    """A published run folder that lost a part file is not read as if it were whole."""
    path = sweep.run_sweep(_config(tmp_path, shard_size=4), "run")
    next(Path(path).glob("h8-sgd-*.parquet")).unlink()
    with pytest.raises(results.ResultsError, match=r"holds 7 part files of the 8 its _run\.json "
                                                   r"lists; the run is incomplete"):  # fmt: skip
        results.read_results(str(tmp_path))


def test_a_symlinked_part_is_trained_again_not_kept(tmp_path):
    """A part file replaced by a link to a copy outside the run is a miss on resume."""
    folder = tmp_path / "out"
    config, opened, shards = _unfinished(folder, "run")
    staged = folder / results.STAGING / opened.place.folder / shards[0].file_name
    outside = tmp_path / "outside.parquet"
    shutil.copy(staged, outside)
    staged.unlink()
    staged.symlink_to(outside)
    assert runs.open_run(config, "run").finished == {shards[1].name}
    path = sweep.run_sweep(config, "run")
    assert not any(p.is_symlink() for p in Path(path).iterdir())


def test_read_results_takes_a_list_of_run_ids(tmp_path):
    """A bare string is refused by name (it would match nothing); an empty list keeps nothing."""
    sweep.run_sweep(_config(tmp_path, hidden_dims=[8], optimizers=["sgd"]), "one")
    with pytest.raises(ValueError, match=r"flow_run_ids: expected a list of run ids, got the "
                                         r"string 'one'"):  # fmt: skip
        results.read_results(str(tmp_path), flow_run_ids="one")
    assert len(results.read_results(str(tmp_path), flow_run_ids=[])) == 0
    assert len(results.read_results(str(tmp_path), flow_run_ids=["one"])) == 7


def test_a_run_being_written_cannot_be_resumed_at_the_same_time(tmp_path):
    """While a live process writes a run, opening it again is refused; a dead writer's mark is
    taken over, and a finished run keeps no mark."""
    import subprocess
    import sys

    folder = tmp_path / "out"
    config, opened, shards = _unfinished(folder, "busy")  # this process holds the run
    lock = folder / results.STAGING / opened.place.folder / runs.LOCK
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(f"{os.uname().nodename}:{holder.pid}")
        with pytest.raises(ValueError, match=rf"run busy is being written right now by process "
                                             rf".*:{holder.pid}; wait for it to end"):  # fmt: skip
            runs.open_run(config, "busy")
    finally:
        holder.kill()
        holder.wait()
    assert runs.open_run(config, "busy").finished == {s.name for s in shards[:2]}  # stale: taken
    path = sweep.run_sweep(config, "busy")
    assert not (Path(path) / runs.LOCK).exists()


def test_version_2_runs_read_with_the_columns_added_since_null(tmp_path):
    """A run folder written by schema version 2 (no outcome, no reference check) still reads."""
    folder = tmp_path / "out"
    path = Path(sweep.run_sweep(_config(folder, hidden_dims=[8], optimizers=["sgd"]), "v2"))
    for part in path.glob("*.parquet"):
        table = pq.read_table(part)
        meta = {**table.schema.metadata, results.META_SCHEMA_VERSION: b"2"}
        old = table.select(results.SCHEMA_V2.names).replace_schema_metadata(meta)
        pq.write_table(old, part)
    frame = results.read_results(str(folder))
    assert len(frame) == 7 and frame["n_train_positive"].notna().all()
    for column in results.ADDED_IN_3:
        assert frame[column].isna().all(), column
    assert list(frame.columns) == list(results.COLUMNS)


def test_a_tampered_staged_manifest_is_not_carried_into_the_published_run(tmp_path):
    """The run id, schema version and shard count of a resumed run come from the run itself."""
    folder = tmp_path / "out"
    config, opened, shards = _unfinished(folder, "tampered")
    manifest = Path(opened.place.staging) / results.MANIFEST
    record = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**record, "run_id": "someone-else", "shards": 2}))
    path = sweep.run_sweep(config, "tampered")
    published = json.loads((Path(path) / results.MANIFEST).read_text())
    assert published["run_id"] == "tampered" and published["shards"] == len(shards)
    assert len(results.read_results(path)) == 2 * 2 * 7  # hidden_dims x optimizers x seeds

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
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

import irismodel.sweep as sweep
from irismodel import results, runs
from irismodel.data import load_dataset, split_dataset
from irismodel.engine import predict_proba, train_reference
from irismodel.metrics import binary_metrics
from irismodel.parameters import SweepConfig

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
    return SweepConfig(**{**params, **overrides})


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
    path = runs.publish_run(opened.place, [], config, "unfinished")
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
    resumed = runs.resumed_config(SweepConfig(output_dir=str(folder), resume="first"))
    assert resumed.learning_rate == 0.05 and resumed.seeds_per_shard == 3
    with pytest.raises(
        ValueError,
        match=r"resume: run first was started with other values of "
        r"learning_rate",
    ):
        runs.resumed_config(SweepConfig(output_dir=str(folder), resume="first", learning_rate=0.2))
    with pytest.raises(
        ValueError,
        match=r"resume: no unfinished run 'nope' in .*; unfinished "
        r"runs there: first",
    ):
        runs.resumed_config(SweepConfig(output_dir=str(folder), resume="nope"))
    path = sweep.run_sweep(resumed, "ignored-new-id")
    assert results.read_results(path)["flow_run_id"].eq("first").all()
    with pytest.raises(ValueError, match=r"resume: run first is already complete"):
        runs.resumed_config(SweepConfig(output_dir=str(folder), resume="first"))


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


_HOLD_LOCK = """
import os, sys, time
from irismodel import runs
place = runs.RunPlace(sys.argv[1], sys.argv[2])
open(sys.argv[3] + f".{os.getpid()}", "w").close()
while not os.path.exists(sys.argv[3]):
    time.sleep(0.001)
try:
    runs.take_lock(place, "busy")
except runs.RunError as error:
    print("refused:", error, flush=True)
else:
    print("holds", flush=True)
    time.sleep(float(sys.argv[4]))
"""


def _lock_holders(place: runs.RunPlace, folder: Path, count: int, hold: float):
    """Start `count` processes that try to take the run's lock at the same instant."""
    import subprocess
    import sys

    go = folder / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _HOLD_LOCK, place.root, place.folder, str(go), str(hold)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    while len(list(folder.glob("go.*"))) < count:
        assert all(child.poll() is None for child in children), "a lock taker died at start"
    go.touch()
    return children


def test_a_run_being_written_cannot_be_resumed_at_the_same_time(tmp_path):
    """While a live process writes a run, opening it again is refused; once that writer is killed
    its run opens at once, and a finished run keeps no mark."""
    import signal

    folder = tmp_path / "out"
    config, opened, shards = _unfinished(folder, "busy")  # this process holds the run
    runs.release_lock(opened.place)
    (holder,) = _lock_holders(opened.place, tmp_path, 1, hold=60)
    try:
        assert holder.stdout.readline().strip() == "holds"
        busy = rf"run busy is being written right now by process {holder.pid} on .*; wait for it"
        with pytest.raises(ValueError, match=busy):
            runs.open_run(config, "busy")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert runs.open_run(config, "busy").finished == {s.name for s in shards[:2]}  # stale: taken
    path = sweep.run_sweep(config, "busy")
    assert not (Path(path) / runs.LOCK).exists()


def test_only_one_of_several_processes_opening_a_run_at_once_gets_it(tmp_path):
    """The writer lock is atomic: of processes racing for one run, exactly one holds it."""
    folder = tmp_path / "out"
    _, opened, _ = _unfinished(folder, "busy")
    runs.release_lock(opened.place)
    children = _lock_holders(opened.place, tmp_path, 4, hold=3)
    outputs = [child.communicate(timeout=60)[0].strip() for child in children]
    assert sorted(o.split(":")[0] for o in outputs) == ["holds", "refused", "refused", "refused"]


def test_a_stale_writer_mark_with_a_reused_pid_never_blocks(tmp_path):
    """A writer mark left by a dead process whose pid now belongs to a live one is taken over."""
    folder = tmp_path / "out"
    config, opened, shards = _unfinished(folder, "stale")
    runs.release_lock(opened.place)
    lock = Path(opened.place.staging) / runs.LOCK
    lock.write_text(f"{os.uname().nodename}:1:1:{runs._boot_id()}")  # pid 1 lives, started later
    assert runs.open_run(config, "stale").finished == {s.name for s in shards[:2]}
    assert runs._alive(f"{os.uname().nodename}:1:1:{runs._boot_id()}") is False
    assert runs._alive(runs._identity(os.getpid())) is True


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


def _iris_csv(path: Path, rows: slice = slice(None)) -> str:
    dataset = load_dataset()
    frame = pd.DataFrame(
        dataset.features, columns=["sepal_length", "sepal_width", "petal_length", "petal_width"]
    )
    frame["species"] = [dataset.class_names[i] for i in dataset.labels]
    frame.iloc[rows].to_csv(path, index=False)
    return str(path)


def test_a_resume_on_changed_data_is_refused(tmp_path):
    """A run is one dataset: resuming after its data file changed is refused, nothing retrained."""
    folder = tmp_path / "out"
    data = _iris_csv(tmp_path / "iris.csv")
    config, opened, shards = _unfinished(folder, "data", data_path=data)
    runs.release_lock(opened.place)
    _iris_csv(tmp_path / "iris.csv", slice(0, 140))  # ten rows fewer: other data
    before = sorted(p.name for p in Path(opened.place.staging).iterdir())
    with pytest.raises(ValueError, match=r"resume: run data was started on other data than "
                                         r".*iris.csv.*restore the data"):  # fmt: skip
        runs.open_run(config, "data")
    with pytest.raises(ValueError, match=r"run data was started on other data"):
        sweep.run_sweep(config, "data")
    assert sorted(p.name for p in Path(opened.place.staging).iterdir()) == before
    assert not list(folder.glob("iris-sweep-*"))


def test_parts_of_other_data_are_trained_again_not_kept(tmp_path):
    """A staged part whose rows are of other data than the run's fails the resume's checks."""
    folder = tmp_path / "out"
    config, opened, shards = _unfinished(folder, "mixed")
    part = Path(opened.place.staging) / shards[0].file_name
    table = pq.read_table(part)
    index = table.schema.get_field_index("data_fingerprint")
    other = table.set_column(index, "data_fingerprint", pa.array(["0" * 64] * len(table)))
    pq.write_table(other.replace_schema_metadata(table.schema.metadata), part)
    assert runs.open_run(config, "mixed").finished == {shards[1].name}


@pytest.mark.parametrize("stranger", ["extra.parquet", "notes.txt", "h8-sgd-0099.parquet"])
def test_publication_refuses_a_file_outside_the_plan_naming_it(tmp_path, stranger):
    """A file in the staging folder that is no part of the run is refused at publication, named;
    the run stays unpublished."""
    folder = tmp_path / "out"
    config, opened, shards = _unfinished(folder, "strange")
    staging = Path(opened.place.staging)
    for shard in shards[2:]:
        sweep.run_shard(split_dataset(load_dataset()), shard, sweep.context_of(opened, config))
    shutil.copy(staging / shards[0].file_name, staging / stranger)
    with pytest.raises(ValueError, match=rf"publish: .*{stranger}' is no part of run strange's "
                                         r"plan; remove it.*--resume strange"):  # fmt: skip
        runs.publish_run(opened.place, [], config, "strange")
    assert not list(folder.glob("iris-sweep-*"))
    (staging / stranger).unlink()
    assert len(results.read_results(runs.publish_run(opened.place, [], config, "strange"))) == 28


def test_publication_refuses_another_run_s_part_and_a_missing_one(tmp_path):
    """A part of another run under a planned name, or a planned part missing, stops publication."""
    folder = tmp_path / "out"
    config, opened, shards = _unfinished(folder, "mine")
    other_config, other, _ = _unfinished(tmp_path / "other", "theirs")
    staging = Path(opened.place.staging)
    with pytest.raises(ValueError, match=r"publish: run mine lacks 10 of its 12 parts "
                                         r"\(h11-adam-0000.parquet, .*--resume mine"):  # fmt: skip
        runs.publish_run(opened.place, [], config, "mine")
    name = shards[0].file_name
    shutil.copy(Path(other.place.staging) / name, staging / name)
    with pytest.raises(ValueError, match=rf"publish: .*{name}' is not shard "
                                         rf"{shards[0].name} of run mine: it belongs to run "
                                         r"'theirs'"):  # fmt: skip
        runs.publish_run(opened.place, [], config, "mine")
    assert not list(folder.glob("iris-sweep-*"))


def test_temporaries_left_by_killed_writers_are_never_published(tmp_path):
    """A half-written temporary in staging (a writer killed mid-file) is removed at publication."""
    folder = tmp_path / "out"
    config, opened, shards = _unfinished(folder, "killed")
    staging = Path(opened.place.staging)
    leftover = staging / f".{shards[2].file_name}.0123abcd.tmp"
    leftover.write_bytes((staging / shards[0].file_name).read_bytes()[:1000])
    path = Path(sweep.run_sweep(config, "killed"))
    assert sorted(p.name for p in path.iterdir()) == sorted(
        [results.MANIFEST, *(s.file_name for s in shards)]
    )


def test_an_object_store_publication_cut_short_is_finished_by_a_resume(tmp_path):
    """On a store without folder renames (a URI), a publication killed between its file moves
    is finished by opening the run again: every part and the manifest end up published."""
    folder = tmp_path / "out"
    config = _config(folder, shard_size=3).model_copy(update={"output_dir": f"file://{folder}"})
    opened = runs.open_run(config, "cut", STARTED)
    split = split_dataset(load_dataset())
    for shard in runs.plan_shards(config):
        sweep.run_shard(split, shard, sweep.context_of(opened, config))
    record = json.loads((Path(folder, *opened.place.staging_names(results.MANIFEST))).read_text())
    runs.write_manifest(opened.place, {**record, "status": "complete"})
    staging = folder / results.STAGING / opened.place.folder
    published = folder / opened.place.folder
    published.mkdir()
    for part in sorted(staging.glob("*.parquet"))[:5]:  # killed after five moves
        part.rename(published / part.name)
    assert results.read_results(str(folder)).empty  # no manifest yet: not a run to read
    runs.release_lock(opened.place)

    reopened = runs.open_run(config, "cut")
    assert reopened.published and not staging.exists()
    assert sorted(p.name for p in published.iterdir()) == sorted(
        [results.MANIFEST, *(s.file_name for s in runs.plan_shards(config))]
    )
    assert len(results.read_results(str(folder))) == 28


def test_a_published_run_without_its_manifest_is_an_error_naming_it(tmp_path):
    """A run folder whose _run.json was removed is never skipped silently: the reader names it."""
    folder = tmp_path / "out"
    path = Path(sweep.run_sweep(_config(folder, hidden_dims=[8], optimizers=["sgd"]), "bare"))
    (path / results.MANIFEST).unlink()
    with pytest.raises(ValueError, match=rf"results: the run folder '.*{path.name}' has no "
                                         rf"{results.MANIFEST}"):  # fmt: skip
        results.read_results(str(folder))


@pytest.mark.parametrize("how", ["another run's part", "a copy under a new name"])
def test_a_part_that_is_not_its_run_s_shard_is_refused_by_the_readers(tmp_path, how):
    """Readers check each part's run id and shard against its folder and name, and name it."""
    from irismodel.report import report_of

    folder = tmp_path / "out"
    config = _config(folder, hidden_dims=[8], optimizers=["sgd"], shard_size=4)
    mine = Path(sweep.run_sweep(config, "mine"))
    if how == "another run's part":
        theirs = Path(sweep.run_sweep(_config(tmp_path / "theirs", **{
            "hidden_dims": [8], "optimizers": ["sgd"], "shard_size": 4}), "theirs"))  # fmt: skip
        shutil.copy(theirs / "h8-sgd-0000.parquet", mine / "h8-sgd-0000.parquet")
        expected = r"h8-sgd-0000.parquet' belongs to run 'theirs', not to the run of its folder"
    else:
        (mine / "h8-sgd-0001.parquet").unlink()
        shutil.copy(mine / "h8-sgd-0000.parquet", mine / "h8-sgd-0001.parquet")
        expected = r"h8-sgd-0001.parquet' holds shard 'h8-sgd-0000', not the shard its name says"
    with pytest.raises(ValueError, match=expected):
        results.read_results(str(folder))
    with pytest.raises(ValueError, match=expected):
        report_of(str(mine), run_ids=["mine"])

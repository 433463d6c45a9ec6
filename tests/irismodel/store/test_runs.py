"""A run's life on disk: its plan, its manifest, resuming with checked parts, publication."""

import json
import pickle
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _store_files import STARTED, config, published, unfinished, write_shards

from irismodel.data import load_dataset
from irismodel.parameters import SweepConfig
from irismodel.store import (
    RunError,
    RunFolder,
    most_work_first,
    open_run,
    plan_shards,
    publish_run,
    read_results,
    resumed_config,
)
from irismodel.store.layout import MANIFEST, STAGING, run_folder_name
from irismodel.store.lock import release_lock
from irismodel.store.runs import write_manifest


def test_the_plan_cuts_seeds_into_named_shards(tmp_path):
    """Each split x configuration's seeds are cut into shards of `shard_size`; the split is in
    the name only when there are several."""
    one = plan_shards(config(tmp_path, shard_size=3))
    assert [s.name for s in one[:4]] == [
        "h8-sgd-0000",
        "h8-sgd-0001",
        "h8-sgd-0002",
        "h8-adam-0000",
    ]
    assert [len(s) for s in one[:3]] == [3, 3, 1] and len(one) == 2 * 2 * 3
    two = plan_shards(config(tmp_path, split_seeds="0,2", hidden_dims=[8], optimizers=["sgd"]))
    assert [s.name for s in two] == ["s0-h8-sgd-0000", "s2-h8-sgd-0000"]
    assert two[1].file_name == "s2-h8-sgd-0000.parquet" and two[1].split_seed == 2


def test_shards_start_with_the_most_work(tmp_path):
    """The flow starts the shards with the most seeds x hidden units first, so the short ones come
    last and a pool's workers finish together; equal work keeps the plan's order."""
    plan = plan_shards(config(tmp_path, shard_size=3, hidden_dims="8,12"))
    ordered = most_work_first(plan)
    assert sorted(ordered, key=plan.index) == plan
    work = [len(s) * s.hidden_dim for s in ordered]
    assert work == sorted(work, reverse=True) and work[0] == 3 * 12 and work[-1] == 1 * 8
    assert [s.name for s in ordered[:2]] == ["h12-sgd-0000", "h12-sgd-0001"]


def test_a_run_folder_resolves_once_and_travels(tmp_path):
    """A run's folder names its staging and published places alike as locations and as paths in
    its file system, and pickles (it travels to Dask workers) with the same answers."""
    place = RunFolder(f"file://{tmp_path}", run_folder_name("r", STARTED))
    assert place.staging == f"file://{tmp_path}/{STAGING}/{place.folder}"
    assert place.path("x.parquet") == f"{tmp_path}/{STAGING}/{place.folder}/x.parquet"
    assert place.path(staged=False) == f"{tmp_path}/{place.folder}"
    again = pickle.loads(pickle.dumps(place))
    assert again == place and again.path("x") == place.path("x") and again.entries() == []


def test_the_manifest_records_the_run(tmp_path):
    """The published run's `_run.json` names its parameters, shards, status and start."""
    path = published(config(tmp_path, shard_size=4), "run")
    manifest = json.loads((Path(path) / MANIFEST).read_text())
    assert manifest["status"] == "complete" and manifest["shards"] == 8
    assert manifest["parameters"]["seeds"] == "0..6" and manifest["run_id"] == "run"
    assert manifest["started_at"] == STARTED.isoformat() and len(manifest["attempts"]) == 1
    assert manifest["data_fingerprint"] == load_dataset().fingerprint()
    assert Path(path).name == run_folder_name("run", STARTED)


def test_a_reopened_run_keeps_its_start_and_its_checked_shards(tmp_path):
    """Opening an unfinished run again keeps its start time and the shards written, and records
    the attempt."""
    folder = tmp_path / "out"
    sweep, opened, shards = unfinished(folder, "killed")
    release_lock(opened.place)
    reopened = open_run(sweep, "killed")
    assert reopened.resumed and reopened.started_at == opened.started_at
    assert reopened.finished == {shards[0].name, shards[1].name}
    record = json.loads((Path(opened.place.staging) / MANIFEST).read_text())
    assert record["status"] == "running" and len(record["attempts"]) == 2


def test_resume_by_id_takes_the_run_s_own_parameters(tmp_path):
    """`resume=<id>` finishes that run with its parameters; other values given are refused."""
    folder = tmp_path / "out"
    unfinished(folder, "first", learning_rate=0.05)
    resumed = resumed_config(SweepConfig(output_dir=str(folder), resume="first"))
    assert resumed.learning_rate == 0.05 and resumed.seeds_per_shard == 3
    given = SweepConfig(output_dir=str(folder), resume="first", learning_rate=0.2)
    with pytest.raises(RunError, match=r"resume: run first was started with other values of "
                                       r"learning_rate"):  # fmt: skip
        resumed_config(given)
    with pytest.raises(RunError, match=r"resume: no unfinished run 'nope' in .*; unfinished "
                                       r"runs there: first"):  # fmt: skip
        resumed_config(SweepConfig(output_dir=str(folder), resume="nope"))
    path = published(resumed, "ignored-new-id")
    assert read_results(path)["flow_run_id"].eq("first").all()
    with pytest.raises(RunError, match=r"resume: run first is already complete"):
        resumed_config(SweepConfig(output_dir=str(folder), resume="first"))


def test_a_published_run_is_reused_only_by_itself(tmp_path):
    """Opening an id whose run is published with other parameters is refused, never reused."""
    published(config(tmp_path, hidden_dims=[8], optimizers=["sgd"]), "same-id")
    assert open_run(config(tmp_path, hidden_dims=[8], optimizers=["sgd"]), "same-id").published
    with pytest.raises(RunError, match=r"run 'same-id': .* is already published by a run with "
                                       r"another id or other parameters"):  # fmt: skip
        open_run(config(tmp_path, hidden_dims=[9], optimizers=["adam"]), "same-id")


def test_a_symlinked_part_is_written_again_not_kept(tmp_path):
    """A part file replaced by a link to a copy outside the run is a miss on resume."""
    folder = tmp_path / "out"
    sweep, opened, shards = unfinished(folder, "run")
    staged = Path(opened.place.staging) / shards[0].file_name
    outside = tmp_path / "outside.parquet"
    shutil.copy(staged, outside)
    staged.unlink()
    staged.symlink_to(outside)
    assert open_run(sweep, "run").finished == {shards[1].name}
    path = published(sweep, "run")
    assert not any(p.is_symlink() for p in Path(path).iterdir())


def test_a_tampered_staged_manifest_is_not_carried_into_the_published_run(tmp_path):
    """The run id, schema version and shard count of a resumed run come from the run itself."""
    folder = tmp_path / "out"
    sweep, opened, shards = unfinished(folder, "tampered")
    release_lock(opened.place)
    manifest = Path(opened.place.staging) / MANIFEST
    record = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**record, "run_id": "someone-else", "shards": 2}))
    path = published(sweep, "tampered")
    record = json.loads((Path(path) / MANIFEST).read_text())
    assert record["run_id"] == "tampered" and record["shards"] == len(shards)
    assert len(read_results(path)) == 2 * 2 * 7  # hidden_dims x optimizers x seeds


def _iris_csv(path: Path, rows: slice = slice(None)) -> str:
    dataset = load_dataset()
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    frame = pd.DataFrame(dataset.features, columns=names)
    frame["species"] = [dataset.class_names[i] for i in dataset.labels]
    frame.iloc[rows].to_csv(path, index=False)
    return str(path)


def test_a_resume_on_changed_data_is_refused(tmp_path):
    """A run is one dataset: reopening it after its data file changed is refused, nothing
    touched; a part whose rows are of other data is written again, never kept."""
    folder = tmp_path / "out"
    sweep, opened, shards = unfinished(folder, "data", data_path=_iris_csv(tmp_path / "iris.csv"))
    release_lock(opened.place)
    part = Path(opened.place.staging) / shards[0].file_name
    table = pq.read_table(part)
    other = pa.array(["0" * 64] * len(table))
    index = table.schema.get_field_index("data_fingerprint")
    table = table.set_column(index, "data_fingerprint", other).replace_schema_metadata(
        table.schema.metadata
    )
    pq.write_table(table, part)
    assert open_run(sweep, "data").finished == {shards[1].name}
    release_lock(opened.place)
    _iris_csv(tmp_path / "iris.csv", slice(0, 140))  # ten rows fewer: other data
    before = sorted(p.name for p in Path(opened.place.staging).iterdir())
    with pytest.raises(RunError, match=r"resume: run data was started on other data than "
                                       r".*iris.csv.*restore the data"):  # fmt: skip
        open_run(sweep, "data")
    assert sorted(p.name for p in Path(opened.place.staging).iterdir()) == before
    assert not list(folder.glob("iris-sweep-*"))


@pytest.mark.parametrize("stranger", ["extra.parquet", "notes.txt", "h8-sgd-0099.parquet"])
def test_publication_refuses_a_file_outside_the_plan_naming_it(tmp_path, stranger):
    """A file in the staging folder that is no part of the run is refused at publication, named;
    the run stays unpublished."""
    folder = tmp_path / "out"
    sweep, opened, shards = unfinished(folder, "strange")
    staging = Path(opened.place.staging)
    write_shards(opened, sweep, shards[2:])
    shutil.copy(staging / shards[0].file_name, staging / stranger)
    with pytest.raises(RunError, match=rf"publish: .*{stranger}' is no part of run strange's "
                                       r"plan; remove it.*--resume strange"):  # fmt: skip
        publish_run(opened.place, [], sweep, "strange")
    assert not list(folder.glob("iris-sweep-*"))
    (staging / stranger).unlink()
    assert len(read_results(publish_run(opened.place, [], sweep, "strange"))) == 28


def test_publication_refuses_another_run_s_part_and_a_missing_one(tmp_path):
    """A part of another run under a planned name, or a planned part missing, stops publication."""
    sweep, opened, shards = unfinished(tmp_path / "out", "mine")
    _, other, _ = unfinished(tmp_path / "other", "theirs")
    with pytest.raises(RunError, match=r"publish: run mine lacks 10 of its 12 parts "
                                       r"\(h11-adam-0000.parquet, .*--resume mine"):  # fmt: skip
        publish_run(opened.place, [], sweep, "mine")
    name = shards[0].file_name
    shutil.copy(Path(other.place.staging) / name, Path(opened.place.staging) / name)
    with pytest.raises(RunError, match=rf"publish: .*{name}' is not shard {shards[0].name} of "
                                       r"run mine: it belongs to run 'theirs'"):  # fmt: skip
        publish_run(opened.place, [], sweep, "mine")
    assert not list((tmp_path / "out").glob("iris-sweep-*"))


def test_a_run_with_failed_shards_stays_in_staging_naming_them(tmp_path):
    """Failed shards: nothing is published, the manifest says failed and names them."""
    sweep, opened, shards = unfinished(tmp_path, "failing")
    assert publish_run(opened.place, [shards[3].name, shards[2].name], sweep, "failing") is None
    record = json.loads((Path(opened.place.staging) / MANIFEST).read_text())
    assert record["status"] == "failed"
    assert record["failed"] == sorted([shards[2].name, shards[3].name])
    assert not list(tmp_path.glob("iris-sweep-*"))


def test_temporaries_left_by_killed_writers_are_never_published(tmp_path):
    """A half-written temporary in staging (a writer killed mid-file) is removed at publication."""
    sweep, opened, shards = unfinished(tmp_path, "killed")
    staging = Path(opened.place.staging)
    leftover = staging / f".{shards[2].file_name}.0123abcd.tmp"
    leftover.write_bytes((staging / shards[0].file_name).read_bytes()[:1000])
    path = Path(published(sweep, "killed"))
    assert sorted(p.name for p in path.iterdir()) == sorted(
        [MANIFEST, *(s.file_name for s in shards)]
    )


def test_an_object_store_publication_cut_short_is_finished_by_a_resume(tmp_path):
    """On a store without folder renames (a URI), a publication killed between its file moves
    is finished by opening the run again: every part and the manifest end up published."""
    folder = tmp_path / "out"
    sweep = config(folder, shard_size=3).model_copy(update={"output_dir": f"file://{folder}"})
    opened = open_run(sweep, "cut", STARTED)
    write_shards(opened, sweep)
    record = json.loads((Path(opened.place.path(MANIFEST))).read_text())
    write_manifest(opened.place, {**record, "status": "complete"})
    staging = folder / STAGING / opened.place.folder
    target = folder / opened.place.folder
    target.mkdir()
    for part in sorted(staging.glob("*.parquet"))[:5]:  # killed after five moves
        part.rename(target / part.name)
    assert read_results(str(folder)).empty  # no manifest yet: not a run to read
    release_lock(opened.place)

    reopened = open_run(sweep, "cut")
    assert reopened.published and not staging.exists()
    assert sorted(p.name for p in target.iterdir()) == sorted(
        [MANIFEST, *(s.file_name for s in plan_shards(sweep))]
    )
    assert len(read_results(str(folder))) == 28

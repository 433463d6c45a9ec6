"""Faults lose no results: retries, partial files, reruns, kills, races, foreign files, pickles."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from _fault_scripts import synthetic_table

import irismodel.engine
import irismodel.sweep
from irismodel import cache, results, storage
from irismodel.results import (
    ResultsError,
    file_metadata,
    list_result_files,
    read_results,
    read_table,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FAULT_SCRIPTS = Path(__file__).with_name("_fault_scripts.py")
TINY = dict(hidden_dims=[8, 9], optimizers=["sgd", "manual"], seeds=[0, 1], epochs=40, device="cpu")
RUN_COLUMNS = ("flow_run_id", "run_started_at", "run_status")  # differ between runs by design

flow_test = pytest.mark.usefixtures("prefect_harness")


class TrainingSpy:
    """Wraps the real `train_batched`: counts calls per configuration, fails the ones asked."""

    def __init__(self, fail_hidden_dims=()):
        self.real = irismodel.engine.train_batched  # never an earlier spy
        self.fail_hidden_dims = set(fail_hidden_dims)
        self.calls = Counter()

    def __call__(self, x_train, y_train, hidden_dim, optimizer, *args, **kwargs):
        self.calls[(hidden_dim, optimizer)] += 1
        if hidden_dim in self.fail_hidden_dims:
            raise RuntimeError(f"injected fault in h{hidden_dim}-{optimizer}")
        return self.real(x_train, y_train, hidden_dim, optimizer, *args, **kwargs)


def _rows_by_model(frame: pd.DataFrame) -> dict[tuple, pd.Series]:
    return {(r.hidden_dim, r.optimizer, r.seed): r for _, r in frame.iterrows()}


def _assert_same_rows(first: pd.Series, second: pd.Series) -> None:
    for column in results.COLUMNS:
        if column in RUN_COLUMNS:
            continue
        a, b = first[column], second[column]
        if column == "loss_curve":
            assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), column
        elif isinstance(a, float) or isinstance(b, float):
            assert np.array_equal(a, b, equal_nan=True) or (pd.isna(a) and pd.isna(b)), column
        else:
            assert a == b, column


def _project_env(**extra: str) -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")])),
        PREFECT_API_URL=PREFECT_API_URL.value(),  # the session's test server: no server start
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def _start(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as output:
        return subprocess.Popen(
            [sys.executable, *args],
            cwd=PROJECT_ROOT,
            env=_project_env(),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: SIGKILL reaches every child
        )


def _kill(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def _cli_args(output_dir: Path, hidden_dims, optimizers, seeds, epochs) -> list[str]:
    return [
        "-m",
        "flows.iris_sweep",
        "--hidden-dims",
        *map(str, hidden_dims),
        "--optimizers",
        *optimizers,
        "--seeds",
        *map(str, seeds),
        "--epochs",
        str(epochs),
        "--device",
        "cpu",
        "--output-dir",
        str(output_dir),
    ]


def _assert_readers_see_only_whole_files(folder: Path) -> list[str]:
    """Every reader lists the same complete files; no *.parquet there is unreadable."""
    listed = list_result_files(str(folder))
    globbed = sorted(str(p) for p in folder.glob("*.parquet"))
    assert listed == globbed
    for path in globbed:
        pq.read_table(path)  # raises on a half-written file
        read_table(path)
    frame = read_results(str(folder))
    if listed:
        assert sorted(pads.dataset(str(folder), format="parquet").files) == listed
        assert len(pd.read_parquet(str(folder))) == len(frame)
    return listed


@flow_test
def test_failing_configuration_is_retried_written_as_partial_then_completed(tmp_path, monkeypatch):
    """A configuration that keeps failing: 3 tries, a partial file, and a rerun that completes."""
    from flows.iris_sweep import SweepFailed, iris_sweep

    failing = TrainingSpy(fail_hidden_dims={9})
    monkeypatch.setattr(irismodel.sweep, "train_batched", failing)
    state = iris_sweep(**TINY, output_dir=str(tmp_path), return_state=True)

    assert state.is_failed()
    assert "h9-sgd" in state.message and "h9-manual" in state.message
    with pytest.raises(SweepFailed, match=r"2 of 4 configurations failed .*: h9-sgd, h9-manual"):
        state.result()
    assert failing.calls == {(9, "sgd"): 3, (9, "manual"): 3, (8, "sgd"): 1, (8, "manual"): 1}
    (partial_path,) = list_result_files(str(tmp_path))
    meta = file_metadata(partial_path)
    assert meta["status"] == "partial" and meta["failed"] == ["h9-sgd", "h9-manual"]
    partial = read_results(str(tmp_path))
    assert (partial.run_status == "partial").all()
    assert sorted(set(zip(partial.hidden_dim, partial.optimizer, partial.seed, strict=True))) == [
        (8, o, s) for o in ("manual", "sgd") for s in (0, 1)
    ]

    spy = TrainingSpy()
    monkeypatch.setattr(irismodel.sweep, "train_batched", spy)
    complete_path = iris_sweep(**TINY, output_dir=str(tmp_path))

    assert spy.calls == {(9, "sgd"): 1, (9, "manual"): 1}  # the finished ones came from the cache
    assert file_metadata(complete_path) | {"parameters": None, "versions": None} == {
        "schema_version": results.SCHEMA_VERSION,
        "parameters": None,
        "versions": None,
        "status": "complete",
        "failed": [],
    }
    complete = read_table(complete_path).to_pandas()
    assert len(complete) == 8 and (complete.run_status == "complete").all()
    before, after = _rows_by_model(partial), _rows_by_model(complete)
    assert len(before) == 4
    for model, row in before.items():
        _assert_same_rows(row, after[model])
    assert sorted(list_result_files(str(tmp_path))) == sorted([partial_path, complete_path])


@flow_test
def test_sigkill_during_training_leaves_no_results_file_and_a_rerun_completes(
    tmp_path, monkeypatch
):
    """A run killed while training leaves only whole cache entries; the rerun trains the rest."""
    # ~1 s per configuration here: long enough to kill in the middle, short enough to rerun
    sweep = dict(hidden_dims=range(8, 14), optimizers=["sgd"], seeds=range(64), epochs=2500)
    output = tmp_path / "out"
    process = _start(_cli_args(output, **sweep), tmp_path / "cli.log")
    try:
        deadline = time.monotonic() + 240
        while not list((output / cache.CACHE_FOLDER).glob("*.json")):
            assert process.poll() is None, (tmp_path / "cli.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no configuration was trained in time"
            time.sleep(0.05)
    finally:
        _kill(process)
    assert process.returncode == -signal.SIGKILL

    assert _assert_readers_see_only_whole_files(output) == []
    assert len(read_results(str(output))) == 0
    entries = list((output / cache.CACHE_FOLDER).glob("*.json"))
    assert 1 <= len(entries) < 6, "the kill did not land during training"
    for entry in entries:
        assert json.loads(entry.read_bytes())["format"] == cache.CACHE_FORMAT

    from flows.iris_sweep import iris_sweep

    spy = TrainingSpy()
    monkeypatch.setattr(irismodel.sweep, "train_batched", spy)
    parameters = {k: list(v) if isinstance(v, range) else v for k, v in sweep.items()}
    path = iris_sweep(**parameters, device="cpu", output_dir=str(output))
    assert sum(spy.calls.values()) == 6 - len(entries)
    assert len(read_table(path)) == 6 * 64


def test_sigkill_during_writing_never_publishes_a_broken_file(tmp_path):
    """Writers killed at random moments leave whole files or hidden temporaries, nothing else."""
    output = tmp_path / "out"
    output.mkdir()
    rng = random.Random(20261127)
    kills = 0
    for round_ in range(3):
        writers = [
            _start(
                [str(FAULT_SCRIPTS), "write-loop", str(output), "200", "5000"],
                tmp_path / f"writer-{round_}-{index}.log",
            )
            for index in range(4)
        ]
        try:
            for index, writer in enumerate(writers):
                log = tmp_path / f"writer-{round_}-{index}.log"
                deadline = time.monotonic() + 120
                while "ready" not in log.read_text():
                    assert writer.poll() is None, log.read_text()[-3000:]
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
            for writer in writers:
                time.sleep(rng.uniform(0.05, 0.5))
                _kill(writer)
                kills += 1
        finally:
            for writer in writers:
                _kill(writer)
        assert all(writer.returncode == -signal.SIGKILL for writer in writers)

    listed = _assert_readers_see_only_whole_files(output)
    assert len(read_results(str(output))) == 200 * len(listed)
    temporaries = [p for p in output.iterdir() if p.name not in {Path(f).name for f in listed}]
    assert all(
        p.name.startswith(".") and p.name.endswith(storage.TEMPORARY_SUFFIX) for p in temporaries
    )
    assert temporaries, f"none of {kills} kills landed while a file was being written"
    query = f"select count(*) from read_parquet('{output}/*.parquet')"
    ((count,),) = duckdb.sql(query).fetchall()
    assert count == 200 * len(listed)


@flow_test
def test_two_runs_writing_at_once_both_land(tmp_path):
    """Two flow runs in two processes, one output location: both files whole, read as one."""
    sweep = dict(hidden_dims=[8, 9], optimizers=["sgd", "manual"], seeds=[0, 1], epochs=50)
    output = tmp_path / "out"
    processes = [_start(_cli_args(output, **sweep), tmp_path / f"cli-{i}.log") for i in range(2)]
    try:
        for process in processes:
            process.wait(timeout=300)
    finally:
        for process in processes:
            _kill(process)
    for index, process in enumerate(processes):
        assert process.returncode == 0, (tmp_path / f"cli-{index}.log").read_text()[-3000:]

    assert len(_assert_readers_see_only_whole_files(output)) == 2
    frame = read_results(str(output))
    assert frame.flow_run_id.nunique() == 2 and len(frame) == 2 * 8
    assert (frame.run_status == "complete").all()
    first, second = (_rows_by_model(part) for _, part in frame.groupby("flow_run_id"))
    assert first.keys() == second.keys()
    for model, row in first.items():
        np.testing.assert_array_equal(row.loss_curve, second[model].loss_curve)


def _write_valid_run(folder: Path, run_id: str) -> str:
    name = results.file_name(run_id, datetime.now(UTC))
    return results.write_results(synthetic_table(run_id), str(folder), name)


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
    valid = _write_valid_run(tmp_path, "good-run")
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


@flow_test
def test_cache_entries_are_json_and_a_pickle_planted_there_never_runs(tmp_path, monkeypatch):
    """Cache entries are JSON; a pickle that would run code in their place is a miss, not a run."""
    from flows.iris_sweep import iris_sweep

    iris_sweep(**TINY, output_dir=str(tmp_path))
    entries = sorted((tmp_path / cache.CACHE_FOLDER).glob("*.json"))
    records = {path: json.loads(path.read_bytes()) for path in entries}
    assert len(records) == 4
    (target,) = [
        p for p, r in records.items() if (r["hidden_dim"], r["optimizer"]) == (8, "manual")
    ]

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    planted = pickle.dumps(Payload())
    pickle.loads(planted)  # the payload is live: unpickling it runs the command
    assert marker.exists()
    marker.unlink()
    target.write_bytes(planted)

    spy = TrainingSpy()
    monkeypatch.setattr(irismodel.sweep, "train_batched", spy)
    path = iris_sweep(**TINY, output_dir=str(tmp_path))
    assert not marker.exists()
    assert spy.calls == {(8, "manual"): 1}  # the planted entry was a miss: retrained
    assert file_metadata(path)["status"] == "complete" and len(read_table(path)) == 8


def test_run_ids_and_names_cannot_write_outside_the_output(tmp_path):
    """A run id or file name with '..', '/' or an absolute path never leaves the output folder."""
    output = tmp_path / "out"
    table = synthetic_table("x")
    started = datetime(2026, 1, 2, tzinfo=UTC)
    for run_id in ("../../evil", "/etc/cron.d/evil", "..", "a/../../b", "..\\evil", "\0"):
        name = results.file_name(run_id, started)
        assert "/" not in name and "\\" not in name and ".." not in name
        assert name.startswith(results.FILE_PREFIX) and name.endswith(results.FILE_SUFFIX)
        path = results.write_results(table, str(output), name)
        assert Path(path).parent == output
    for name in ("../evil.parquet", "/tmp/evil.parquet", "sub/../../evil.parquet"):
        with pytest.raises(ValueError, match=r"refusing file name"):
            results.write_results(table, str(output), name)
    with pytest.raises(ValueError, match=r"refusing file name"):
        storage.write_atomically(str(output / ".cache"), "../../evil.json", lambda s: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert all(p.parent == output for p in output.iterdir())

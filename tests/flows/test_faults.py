"""Faults lose no results: retries, partial files, reruns, kills, races, pickles."""

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

import irismodel.engine
import irismodel.sweep
from irismodel import store
from irismodel.store import file_metadata, layout, list_result_files, read_results, schema
from irismodel.store.lock import release_lock

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TINY = dict(
    hidden_dims=[8, 9],
    optimizers=["sgd", "manual"],
    split_seeds="0",
    seeds=[0, 1],
    epochs=40,
    device="cpu",
)
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
    for column in schema.COLUMNS:
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
    # outside the session's test server (a test that needs none) no API is named
    return {name: value for name, value in env.items() if value is not None}


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
        "cli.sweep",
        "--hidden-dims",
        *map(str, hidden_dims),
        "--optimizers",
        *optimizers,
        "--split-seeds",
        "0",
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
    globbed = sorted(
        str(p) for pattern in ("*.parquet", "iris-sweep-*/*.parquet") for p in folder.glob(pattern)
    )
    assert listed == globbed
    for path in globbed:
        pq.read_table(path)  # raises on a half-written file
        read_results(path)
    frame = read_results(str(folder))
    if listed:
        assert sorted(pads.dataset(str(folder), format="parquet").files) == listed
        assert len(pd.read_parquet(str(folder))) == len(frame)
    return listed


@flow_test
@pytest.mark.server
def test_failing_shard_is_retried_kept_unpublished_then_resumed(tmp_path, monkeypatch):
    """A shard that keeps failing: 3 tries, nothing published, the rest kept; a resume finishes."""
    from flows.iris_sweep import iris_sweep
    from tasks.results import SweepFailed

    failing = TrainingSpy(fail_hidden_dims={9})
    monkeypatch.setattr(irismodel.sweep, "train_batched", failing)
    state = iris_sweep(**TINY, output_dir=str(tmp_path), return_state=True)

    assert state.is_failed()
    run_id = str(state.state_details.flow_run_id)
    with pytest.raises(
        SweepFailed,
        match=rf"2 of 4 shards did not finish .*: h9-sgd-0000, h9-manual-0000\. 2 of the 4 "
        rf"shards are written and kept, .*`iris-sweep --resume {run_id}`",
    ):
        state.result()
    assert failing.calls == {(9, "sgd"): 3, (9, "manual"): 3, (8, "sgd"): 1, (8, "manual"): 1}
    assert list_result_files(str(tmp_path)) == []  # nothing published
    assert len(read_results(str(tmp_path))) == 0
    staged = read_results(str(tmp_path), include_unfinished=True)
    assert (staged.run_status == "partial").all()
    assert sorted(set(zip(staged.hidden_dim, staged.optimizer, staged.seed, strict=True))) == [
        (8, o, s) for o in ("manual", "sgd") for s in (0, 1)
    ]
    kept = {p.name: p.read_bytes() for p in (tmp_path / layout.STAGING).glob("*/*.parquet")}
    assert len(kept) == 2

    spy = TrainingSpy()
    monkeypatch.setattr(irismodel.sweep, "train_batched", spy)
    path = iris_sweep(output_dir=str(tmp_path), resume=run_id)

    assert spy.calls == {(9, "sgd"): 1, (9, "manual"): 1}  # only the missing shards
    assert file_metadata(path)["status"] == "complete"
    complete = read_results(path)
    assert len(complete) == 8 and (complete.run_status == "complete").all()
    assert set(complete.flow_run_id) == {run_id}  # a resumed run keeps its id
    for name, blob in kept.items():
        assert (Path(path) / name).read_bytes() == blob
    assert not any((tmp_path / layout.STAGING).iterdir())


def _part_writers(folder: Path) -> dict[str, int]:
    """Return part file name -> pid of the process that wrote it (from its metadata)."""
    writers = {}
    for part in folder.glob("*.parquet"):
        meta = pq.read_schema(part).metadata
        writers[part.name] = int(meta[layout.META_WRITER].decode().rsplit(":", 1)[1])
    return writers


@flow_test
@pytest.mark.server
@pytest.mark.subprocess
def test_sigkill_mid_sweep_is_resumed_training_only_the_missing_shards(tmp_path):
    """A run killed mid-sweep publishes nothing; `--resume` trains only the missing shards."""
    # 12 shards of ~0.3 s each here: long enough to kill in the middle, short enough to rerun
    sweep = dict(hidden_dims=range(8, 14), optimizers=["sgd"], seeds=range(32), epochs=2500)
    output = tmp_path / "out"
    process = _start([*_cli_args(output, **sweep), "--shard-size", "16"], tmp_path / "cli.log")
    staging = output / layout.STAGING
    try:
        deadline = time.monotonic() + 240
        while len(list(staging.glob("*/*.parquet"))) < 2:
            assert process.poll() is None, (tmp_path / "cli.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no shard was written in time"
            time.sleep(0.05)
    finally:
        _kill(process)
    assert process.returncode == -signal.SIGKILL

    assert _assert_readers_see_only_whole_files(output) == []
    (run_folder,) = staging.iterdir()
    before = {p.name: p.read_bytes() for p in run_folder.glob("*.parquet")}
    assert 2 <= len(before) < 12, "the kill did not land during training"
    assert set(_part_writers(run_folder).values()) == {process.pid}
    run_id = run_folder.name.split("Z-", 1)[1]

    resume = _start(["-m", "cli.sweep", "--output-dir", str(output), "--resume", run_id],
                    tmp_path / "resume.log")  # fmt: skip
    try:
        assert resume.wait(timeout=300) == 0, (tmp_path / "resume.log").read_text()[-3000:]
    finally:
        _kill(resume)
    (published,) = output.glob("iris-sweep-*")
    assert published.name == run_folder.name and not any(staging.iterdir())
    writers = _part_writers(published)
    assert len(writers) == 12
    assert {n for n, pid in writers.items() if pid == process.pid} == set(before)
    assert {n for n, pid in writers.items() if pid == resume.pid} == set(writers) - set(before)
    for name, blob in before.items():
        assert (published / name).read_bytes() == blob
    frame = read_results(str(output))
    assert len(frame) == 6 * 32 and set(frame.flow_run_id) == {run_id}


@flow_test
@pytest.mark.server
@pytest.mark.subprocess
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

    assert len(_assert_readers_see_only_whole_files(output)) == 2 * 4  # 4 parts each
    assert len(list(output.glob("iris-sweep-*"))) == 2
    frame = read_results(str(output))
    assert frame.flow_run_id.nunique() == 2 and len(frame) == 2 * 8
    assert (frame.run_status == "complete").all()
    first, second = (_rows_by_model(part) for _, part in frame.groupby("flow_run_id"))
    assert first.keys() == second.keys()
    for model, row in first.items():
        np.testing.assert_array_equal(row.loss_curve, second[model].loss_curve)


@flow_test
@pytest.mark.server
def test_a_report_that_cannot_be_made_leaves_the_run_completed(tmp_path, monkeypatch):
    """The results are the product: a failing report (a full disk, a broken plot) is a warning
    and missing report files, never a failed run."""
    import tasks.report
    from flows.iris_sweep import iris_sweep

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tasks.report, "report_of", disk_full)
    state = iris_sweep(**TINY, output_dir=str(tmp_path), return_state=True)
    assert state.is_completed(), state.message
    path = state.result()
    assert file_metadata(path)["status"] == "complete" and len(read_results(path)) == 8
    assert not list(Path(path).glob("_iris-sweep-*"))  # no report files, no half-written PNG


@flow_test
@pytest.mark.server
def test_a_publication_that_fails_is_one_line_with_the_resume_hint(tmp_path, monkeypatch, capsys):
    """Disk full at publication: one line naming the cause and the resume command, no traceback;
    the resume then publishes the run."""
    import errno

    from cli.sweep import main

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    args = ["--hidden-dims", "8", "--optimizers", "sgd", "--seeds", "0..1", "--split-seeds", "0",
            "--epochs", "20", "--device", "cpu", "--output-dir", str(tmp_path),
            "--no-report"]  # fmt: skip
    with monkeypatch.context() as patch:
        patch.setattr(store.runs, "publish_folder", disk_full)
        assert main(args) == 1
    err = capsys.readouterr().err
    match = re.search(r"iris-sweep: error: the run could not be published: .*No space left on "
                      r"device.*`iris-sweep --resume ([0-9a-f-]+)`\n", err)  # fmt: skip
    assert match and "Traceback" not in err, err
    assert main(["--resume", match.group(1), "--output-dir", str(tmp_path), "--no-report"]) == 0
    assert len(read_results(str(tmp_path))) == 2


TINY_ARGS = ["--hidden-dims", "8", "--optimizers", "sgd", "--seeds", "0..1", "--split-seeds", "0",
             "--epochs", "20", "--device", "cpu"]  # fmt: skip


@flow_test
@pytest.mark.server
def test_an_error_after_the_run_opened_is_one_line_with_the_resume_hint(
    tmp_path, monkeypatch, capsys
):
    """An unexpected error once the run is open: exit 1, one line with the cause and the resume
    command of the run left in staging."""
    import flows.iris_sweep
    from cli.sweep import main

    def lost(*args, **kwargs):
        raise RuntimeError("the task runner went away")

    monkeypatch.setattr(flows.iris_sweep, "wait_for_shards", lost)
    assert main([*TINY_ARGS, "--output-dir", str(tmp_path), "--no-report"]) == 1
    err = capsys.readouterr().err
    (run_id,) = store.runs.run_folders(str(tmp_path))
    assert err.endswith(
        "iris-sweep: error: the task runner went away The shards written so far are kept; "
        f"finish the run with `iris-sweep --resume {run_id}`\n"
    ), err


@flow_test
@pytest.mark.server
def test_an_error_after_publication_is_a_warning_and_the_run_stands(tmp_path, monkeypatch, capsys):
    """Whatever fails once the run is published is a warning: exit 0, the results printed."""
    import flows.iris_sweep
    from cli.sweep import main

    def gone(*args, **kwargs):
        raise ConnectionError("the Prefect API went away")

    monkeypatch.setattr(flows.iris_sweep, "publish_report", gone)
    assert main([*TINY_ARGS, "--output-dir", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    (folder,) = tmp_path.glob("iris-sweep-*")
    assert "iris-sweep: warning: the run is published, but then: the Prefect API went away" in err
    assert out.endswith(f"results: {folder}\n"), out


@flow_test
@pytest.mark.server
@pytest.mark.subprocess
def test_a_resume_while_another_process_writes_the_run_is_one_line(tmp_path, capsys):
    """Two resumes at once: the second is refused in one line naming the writer, exit 2."""
    from cli.sweep import main
    from irismodel.parameters import SweepConfig

    config = SweepConfig(**TINY, output_dir=str(tmp_path))
    opened = store.open_run(config, "twice")
    release_lock(opened.place)  # the run waits in staging, held by another process:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from irismodel.store import RunFolder, lock; "
         "lock.take_lock(RunFolder(sys.argv[1], sys.argv[2]), 'twice'); print('holds', "
         "flush=True); time.sleep(60)", opened.place.root, opened.place.folder],
        stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT, env=_project_env(),
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "holds"
        assert main(["--resume", "twice", "--output-dir", str(tmp_path)]) == 2
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert re.search(rf"iris-sweep: error: run twice is being written right now by process "
                     rf"{holder.pid} on .*\n$", err), err  # fmt: skip
    assert "Traceback" not in err

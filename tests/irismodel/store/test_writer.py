"""The atomic writer: hidden temporaries, one rename, never a replaced file or a followed link."""

import contextlib
import errno
import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from _store_files import file_name, synthetic_table, write_single_file

from irismodel.store import layout, list_result_files, read_results, writer

ROOT = Path(__file__).resolve().parents[3]
HELPER = Path(__file__).with_name("_store_files.py")


def test_write_goes_through_a_hidden_temporary(tmp_path):
    """While bytes are written only a hidden temporary exists; after, only the final file."""
    seen = []

    def write(stream):
        stream.write(b"half")
        seen.append(sorted(os.listdir(tmp_path / "out")))
        stream.write(b" and half")

    path = writer.write_atomically(str(tmp_path / "out"), "run.parquet", write)
    (during,) = seen
    assert len(during) == 1 and during[0].startswith(".run.parquet.")
    assert during[0].endswith(layout.TEMPORARY_SUFFIX)
    assert path == str(tmp_path / "out" / "run.parquet")
    assert os.listdir(tmp_path / "out") == ["run.parquet"]
    assert (tmp_path / "out" / "run.parquet").read_bytes() == b"half and half"


def test_failed_write_leaves_nothing(tmp_path):
    """A write that raises leaves neither the file nor its temporary."""

    def write(stream):
        stream.write(b"partial")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        writer.write_atomically(str(tmp_path), "run.parquet", write)
    assert list(tmp_path.iterdir()) == []


def test_existing_file_is_never_replaced(tmp_path):
    """Writing a name that exists raises FileExistsError and keeps the first file's bytes."""
    writer.write_atomically(str(tmp_path), "run.parquet", lambda s: s.write(b"first"))
    with pytest.raises(FileExistsError, match="refusing to replace"):
        writer.write_atomically(str(tmp_path), "run.parquet", lambda s: s.write(b"second"))
    assert (tmp_path / "run.parquet").read_bytes() == b"first"
    assert os.listdir(tmp_path) == ["run.parquet"]


def test_racing_writers_of_one_name_leave_one_whole_file(tmp_path):
    """Writers racing on one name: exactly one wins, the file is whole, no temporary is left."""
    barrier = threading.Barrier(8)
    outcomes = []

    def race(index):
        def write(stream):
            barrier.wait()  # every writer has its temporary open before any publishes
            stream.write(bytes([index]) * 100_000)

        try:
            writer.write_atomically(str(tmp_path), "run.parquet", write)
            outcomes.append(("won", index))
        except FileExistsError:
            outcomes.append(("lost", index))

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [index for outcome, index in outcomes if outcome == "won"]
    assert len(winners) == 1 and len(outcomes) == 8
    assert (tmp_path / "run.parquet").read_bytes() == bytes(winners) * 100_000
    assert os.listdir(tmp_path) == ["run.parquet"]


def test_file_system_without_hard_links_still_publishes(tmp_path, monkeypatch):
    """Where hard links are not supported, the temporary is renamed into place instead."""

    def no_links(source, target, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(writer.os, "link", no_links)
    writer.write_atomically(str(tmp_path), "run.parquet", lambda s: s.write(b"bytes"))
    assert os.listdir(tmp_path) == ["run.parquet"]
    with pytest.raises(FileExistsError, match="refusing to replace"):
        writer.write_atomically(str(tmp_path), "run.parquet", lambda s: s.write(b"other"))
    assert (tmp_path / "run.parquet").read_bytes() == b"bytes"
    assert os.listdir(tmp_path) == ["run.parquet"]


def test_uri_location_is_written_atomically(tmp_path):
    """A file:// URI location is written under it and the URI of the file is returned."""
    uri = f"file://{tmp_path}/out"
    path = writer.write_atomically(uri, "run.parquet", lambda s: s.write(b"bytes"))
    assert path == f"{uri}/run.parquet"
    assert os.listdir(tmp_path / "out") == ["run.parquet"]


def test_writes_never_follow_a_planted_link(tmp_path):
    """A link planted where a file or a folder will be written is replaced or refused, never
    written through: the file outside the output location keeps its bytes."""
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_bytes(b"precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").symlink_to(victim)
    writer.write_atomically(str(out), "report.md", lambda s: s.write(b"report"), replace=True)
    assert victim.read_bytes() == b"precious"
    assert not (out / "report.md").is_symlink() and (out / "report.md").read_bytes() == b"report"
    (out / "sub").symlink_to(outside)
    with pytest.raises(OSError, match=r"refusing to write through the symbolic link 'sub'"):
        writer.write_file(str(out), ("sub", "victim.txt"), lambda s: s.write(b"evil"))
    assert victim.read_bytes() == b"precious" and sorted(os.listdir(outside)) == ["victim.txt"]


def test_run_ids_and_names_cannot_write_outside_the_output(tmp_path):
    """A run id or file name with '..', '/' or an absolute path never leaves the output folder."""
    output = tmp_path / "out"
    table = synthetic_table("x")
    for run_id in ("../../evil", "/etc/cron.d/evil", "..", "a/../../b", "..\\evil", "\0"):
        name = file_name(run_id, datetime(2026, 1, 2, tzinfo=UTC))
        assert "/" not in name and "\\" not in name and ".." not in name
        assert name.startswith(layout.FILE_PREFIX) and name.endswith(layout.FILE_SUFFIX)
        assert Path(write_single_file(table, str(output), name)).parent == output
    for name in ("../evil.parquet", "/tmp/evil.parquet", "sub/../../evil.parquet"):
        with pytest.raises(ValueError, match=r"refusing file name"):
            write_single_file(table, str(output), name)
    with pytest.raises(ValueError, match=r"refusing file name"):
        writer.write_atomically(str(output / ".staging"), "../../evil.json", lambda s: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert all(p.parent == output for p in output.iterdir())


def _start_writer(output: Path, log: Path) -> subprocess.Popen:
    """Start a process that writes results files under `output` until it is killed."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    with open(log, "ab") as stream:
        return subprocess.Popen(
            [sys.executable, str(HELPER), "write-loop", str(output), "200", "5000"],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=stream, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: SIGKILL reaches every child
        )  # fmt: skip


def _kill(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@pytest.mark.subprocess
def test_sigkill_during_writing_never_publishes_a_broken_file(tmp_path):
    """Writers killed at random moments leave whole files or hidden temporaries, nothing else;
    every reader lists and reads the same whole files."""
    output = tmp_path / "out"
    output.mkdir()
    rng = random.Random(20261127)
    kills = 0
    for round_ in range(2):
        logs = [tmp_path / f"writer-{round_}-{index}.log" for index in range(3)]
        writers = [_start_writer(output, log) for log in logs]
        try:
            for process, log in zip(writers, logs, strict=True):
                deadline = time.monotonic() + 120
                while "ready" not in log.read_text():
                    assert process.poll() is None, log.read_text()[-3000:]
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
            for process in writers:
                time.sleep(rng.uniform(0.05, 0.5))
                _kill(process)
                kills += 1
        finally:
            for process in writers:
                _kill(process)
        assert all(process.returncode == -signal.SIGKILL for process in writers)

    listed = list_result_files(str(output))
    assert listed == sorted(str(p) for p in output.glob("*.parquet"))
    for path in listed:
        pq.read_table(path)  # raises on a half-written file
    assert len(read_results(str(output))) == 200 * len(listed)
    assert sorted(pads.dataset(str(output), format="parquet").files) == listed
    assert len(pd.read_parquet(str(output))) == 200 * len(listed)
    temporaries = [p for p in output.iterdir() if str(p) not in listed]
    assert all(layout.is_temporary(p.name) for p in temporaries)
    assert temporaries, f"none of {kills} kills landed while a file was being written"
    ((count,),) = duckdb.sql(f"select count(*) from read_parquet('{output}/*.parquet')").fetchall()
    assert count == 200 * len(listed)


def test_float_lists_are_byte_split_and_read_back_exactly(tmp_path):
    """Curves and weights are written BYTE_STREAM_SPLIT (no dictionary, no statistics), every
    other column as before, and pyarrow and DuckDB read the float lists back value for value."""
    table = synthetic_table("run-1", rows=6, epochs=50)
    path = tmp_path / "part.parquet"
    with open(path, "wb") as stream:
        writer.write_parquet(table, stream)
    meta = pq.ParquetFile(path).metadata.row_group(0)
    columns = [meta.column(i) for i in range(meta.num_columns)]
    encodings = {column.path_in_schema: column.encodings for column in columns}
    split = {name for name, found in encodings.items() if "BYTE_STREAM_SPLIT" in found}
    floats = {f.name for f in table.schema if str(f.type) == "list<item: float>"}
    assert "loss_curve" in floats and split == {f"{name}.list.element" for name in floats}
    assert not any("DICTIONARY" in e for name in split for e in encodings[name])
    with_statistics = {c.path_in_schema for c in columns if c.is_stats_set}
    assert with_statistics == set(encodings) - split  # every scalar column, no float list
    curves = table.column("loss_curve").to_pylist()
    assert pq.read_table(path).column("loss_curve").to_pylist() == curves
    read = duckdb.sql(f"SELECT loss_curve FROM '{path}' ORDER BY seed").fetchall()
    assert [list(curve) for (curve,) in read] == curves

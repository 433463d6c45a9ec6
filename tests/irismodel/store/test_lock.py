"""The writer lock: one live process writes a run at a time; a dead writer never blocks."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from _store_files import published, unfinished

from irismodel.data import load_dataset
from irismodel.store import RunError, RunFolder, check_resumable, open_run
from irismodel.store import lock as writer_lock
from irismodel.store.layout import LOCK

_HOLD_LOCK = """
import os, sys, time
from irismodel.store import RunError, RunFolder
from irismodel.store.lock import take_lock
place = RunFolder(sys.argv[1], sys.argv[2])
open(sys.argv[3] + f".{os.getpid()}", "w").close()
while not os.path.exists(sys.argv[3]):
    time.sleep(0.001)
try:
    take_lock(place, "busy")
except RunError as error:
    print("refused:", error, flush=True)
else:
    print("holds", flush=True)
    time.sleep(float(sys.argv[4]))
"""


def _lock_holders(place: RunFolder, folder: Path, count: int, hold: float):
    """Start `count` processes that try to take the run's lock at the same instant."""
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


@pytest.mark.subprocess
def test_a_run_being_written_cannot_be_resumed_at_the_same_time(tmp_path):
    """While a live process writes a run, opening it again is refused (and said before any work
    by `check_resumable`); once that writer is killed its run opens at once, and a finished run
    keeps no mark."""

    sweep, opened, shards = unfinished(tmp_path / "out", "busy")  # this process holds the run
    writer_lock.release_lock(opened.place)
    (holder,) = _lock_holders(opened.place, tmp_path, 1, hold=60)
    try:
        assert holder.stdout.readline().strip() == "holds"
        busy = rf"run busy is being written right now by process {holder.pid} on .*; wait for it"
        with pytest.raises(RunError, match=busy):
            open_run(sweep, "busy")
        with pytest.raises(RunError, match=busy):
            check_resumable(
                sweep.model_copy(update={"resume": "busy"}), load_dataset().fingerprint()
            )
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert open_run(sweep, "busy").finished == {s.name for s in shards[:2]}  # stale: taken
    path = published(sweep, "busy")
    assert not (Path(path) / LOCK).exists()


@pytest.mark.subprocess
def test_only_one_of_several_processes_opening_a_run_at_once_gets_it(tmp_path):
    """The writer lock is atomic: of processes racing for one run, exactly one holds it."""
    _, opened, _ = unfinished(tmp_path / "out", "busy")
    writer_lock.release_lock(opened.place)
    children = _lock_holders(opened.place, tmp_path, 4, hold=3)
    outputs = [child.communicate(timeout=60)[0].strip() for child in children]
    assert sorted(o.split(":")[0] for o in outputs) == ["holds", "refused", "refused", "refused"]


def test_a_stale_writer_mark_with_a_reused_pid_never_blocks(tmp_path):
    """A writer mark left by a dead process whose pid now belongs to a live one is taken over."""
    sweep, opened, shards = unfinished(tmp_path / "out", "stale")
    writer_lock.release_lock(opened.place)
    mark = f"{os.uname().nodename}:1:1:{writer_lock._boot_id()}"  # pid 1 lives, started later
    (Path(opened.place.staging) / LOCK).write_text(mark)
    assert open_run(sweep, "stale").finished == {s.name for s in shards[:2]}
    assert writer_lock._alive(mark) is False
    assert writer_lock._alive(writer_lock._identity(os.getpid())) is True


def test_an_object_store_mark_of_a_live_writer_refuses_and_a_dead_one_is_taken(tmp_path):
    """On a store without locks (a URI), a mark naming a live process of this host refuses the
    run; a mark of a process that is gone is taken over."""

    from _store_files import config

    sweep = config(tmp_path, shard_size=3).model_copy(update={"output_dir": f"file://{tmp_path}"})
    opened = open_run(sweep, "marked")
    writer_lock.release_lock(opened.place)
    mark = Path(opened.place.path(LOCK))
    assert not mark.exists()
    mark.write_text(writer_lock._identity(1))  # pid 1: alive, not this process
    with pytest.raises(RunError, match=r"run marked is being written right now by process 1"):
        open_run(sweep, "marked")
    mark.write_text(f"{os.uname().nodename}:1:1:{writer_lock._boot_id()}")  # pid 1 reused
    assert open_run(sweep, "marked").resumed
    assert mark.read_text() == writer_lock._identity(os.getpid())

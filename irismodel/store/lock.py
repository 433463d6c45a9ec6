"""The writer lock of a run: one live process writes a run at a time, a dead one never blocks."""

import contextlib
import fcntl
import os
import socket
import threading
from typing import TYPE_CHECKING

from .layout import LOCK, writer_id
from .locations import child, is_uri, read_bytes
from .writer import write_file

if TYPE_CHECKING:
    from .runs import RunFolder

# Locks this process holds, by lock file path: a Prefect retry in this process retakes its own.
_HELD: dict[str, int] = {}
_HELD_GUARD = threading.Lock()


class RunError(ValueError):
    """A run cannot be resumed or published as asked."""


def _proc(name: str) -> str:
    try:
        with open(f"/proc/{name}") as stream:
            return stream.read().strip()
    except OSError:
        return ""


def _boot_id() -> str:
    return _proc("sys/kernel/random/boot_id")


def _start_time(pid: int) -> str:
    """A process's start time in clock ticks since boot (with the boot id: who it is), or ''."""
    fields = _proc(f"{pid}/stat").rsplit(")", 1)[-1].split()  # the name may hold spaces
    return fields[19] if len(fields) > 19 else ""  # field 22 of stat(5)


def _identity(pid: int) -> str:
    return f"{writer_id(pid)}:{_start_time(pid)}:{_boot_id()}"


def _alive(holder: str) -> bool:
    """Whether the writer `host:pid:start:boot` is a live process of this host."""
    host, pid, start, boot = (holder.split(":", 3) + ["", "", ""])[:4]
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another host's mark cannot be told apart from a dead one
    if boot and boot != _boot_id():
        return False  # written before this machine restarted
    if not start:  # an old mark: the pid alone
        return os.path.exists(f"/proc/{pid}")
    return _start_time(int(pid)) == start  # a pid reused by another process starts later


def _refuse(run_id: str, holder: str) -> RunError:
    host, pid = (holder.split(":", 2) + [""])[:2]
    who = f"process {pid} on {host}" if pid.isdigit() else holder or "another process"
    return RunError(
        f"run {run_id} is being written right now by {who}; wait for it to end "
        "(or stop it) before resuming it"
    )


def _flock(descriptor: int, mode: int, run_id: str) -> None:
    """Take `mode` on the lock file without waiting; refuse naming the holder if it is taken."""
    try:
        fcntl.flock(descriptor, mode | fcntl.LOCK_NB)
    except OSError as error:
        holder = os.pread(descriptor, 4096, 0).decode(errors="replace").strip()
        os.close(descriptor)
        if isinstance(error, BlockingIOError):
            raise _refuse(run_id, holder) from None
        raise


def _same_file(descriptor: int, path: str) -> bool:
    try:
        mine, there = os.fstat(descriptor), os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)


def take_lock(place: "RunFolder", run_id: str) -> None:
    """Mark this process as the one writing the run; refuse if another live process is.

    Locally the mark is under an exclusive `flock`, which the kernel drops however its process
    dies; on an object store it names the process, and is taken over once that no longer runs.
    """
    me = _identity(os.getpid())
    if is_uri(place.root):
        names = place.staging_names(LOCK)
        try:
            holder = read_bytes(child(place.root, *names)).decode().strip()
        except (OSError, ValueError):
            holder = ""
        if holder and holder != me and _alive(holder):
            raise _refuse(run_id, holder)
        write_file(place.root, names, lambda s: s.write(me.encode()), replace=True)
        return
    path = place.path(LOCK)
    with _HELD_GUARD:
        if path in _HELD and _same_file(_HELD[path], path):
            return
        if path in _HELD:
            os.close(_HELD.pop(path))
        try:
            os.makedirs(place.path(), exist_ok=True)
        except OSError as error:
            raise RunError(
                f"run {run_id}: cannot make its staging folder {place.path()!r} ({error.strerror})"
            ) from error
        while True:
            try:
                flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
                descriptor = os.open(path, flags, 0o644)
            except FileNotFoundError:
                raise RunError(
                    f"run {run_id} was published meanwhile by another process; nothing is left "
                    "to do"
                ) from None
            _flock(descriptor, fcntl.LOCK_EX, run_id)
            if _same_file(descriptor, path):
                break
            os.close(descriptor)  # the holder removed it as we opened it: try the new one
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, me.encode(), 0)
        _HELD[path] = descriptor


def check_free(place: "RunFolder", run_id: str) -> None:
    """Refuse if another process holds the run's lock now (locally; object stores say at open)."""
    if is_uri(place.root):
        return
    path = place.path(LOCK)
    with _HELD_GUARD:
        if path in _HELD:
            return
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return  # no mark, or none to read: nobody holds it
        _flock(descriptor, fcntl.LOCK_SH, run_id)
        os.close(descriptor)  # closing drops the shared lock taken to look


def release_lock(place: "RunFolder", published: bool = False) -> None:
    """Drop this run's writer mark; `published`: the run folder has moved there with it."""
    if is_uri(place.root):  # the mark stays in staging: publication skips it
        with contextlib.suppress(OSError):  # FileNotFoundError included
            place.fs.delete_file(place.path(LOCK))
        return
    with _HELD_GUARD:
        descriptor = _HELD.pop(place.path(LOCK), None)
        if descriptor is None:
            return
        path = place.path(LOCK, staged=not published)
        if _same_file(descriptor, path):
            with contextlib.suppress(OSError):
                os.unlink(path)
        os.close(descriptor)

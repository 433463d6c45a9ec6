"""Output locations: local paths or `pyarrow.fs` URIs, checked for writing, written atomically."""

from __future__ import annotations

import contextlib
import os
import posixpath
import uuid
from collections.abc import Callable
from typing import IO

import pyarrow as pa
import pyarrow.fs as pafs

TEMPORARY_SUFFIX = ".tmp"


def _is_uri(location: str) -> bool:
    return "://" in location


def absolute(location: str) -> str:
    """Return a local path made absolute (so every process of a cluster means the same folder)."""
    return location if _is_uri(location) else os.path.abspath(os.path.expanduser(location))


def resolve(location: str) -> tuple[pafs.FileSystem, str]:
    """Return the filesystem and the path inside it for a local path or a `pyarrow.fs` URI."""
    if _is_uri(location):
        try:
            return pafs.FileSystem.from_uri(location)
        except (pa.ArrowException, OSError, ValueError) as error:  # ArrowInvalid is a ValueError
            raise ValueError(f"output_dir: cannot open {location!r}: {error}") from error
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(location))


def join(location: str, name: str) -> str:
    """Join a file name onto a location, refusing names that would leave it."""
    if not name or name in (".", "..") or any(c in name for c in ("/", "\\", "\0")):
        raise ValueError(
            f"refusing file name {name!r}: it must be a plain name inside the location"
        )
    return (
        posixpath.join(location.rstrip("/"), name)
        if _is_uri(location)
        else os.path.join(location, name)
    )


def check_writable(location: str, parameter: str = "output_dir") -> None:
    """Raise `ValueError` naming `parameter` if files cannot be created under `location`.

    Nothing is left behind: for a local folder, a probe file is created and removed in the
    folder or, when it does not exist yet, in its nearest existing parent.
    """
    if not isinstance(location, str) or not location.strip():
        raise ValueError(f"{parameter}: expected a folder path or URI, got {location!r}")
    fs, path = resolve(location)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        raise ValueError(f"{parameter}: {location!r} is a file; it must be a folder")
    if not isinstance(fs, pafs.LocalFileSystem):
        return  # remote stores have no cheap, side-effect-free write check
    probe_dir = path
    while not os.path.isdir(probe_dir):
        if os.path.exists(probe_dir):
            raise ValueError(
                f"{parameter}: {location!r} cannot be created: {probe_dir!r} is a file"
            )
        parent = os.path.dirname(probe_dir)
        if parent == probe_dir:
            break
        probe_dir = parent
    probe = os.path.join(probe_dir, f".iris-sweep-probe-{uuid.uuid4().hex}{TEMPORARY_SUFFIX}")
    try:
        with open(probe, "xb"):
            pass
        os.remove(probe)
    except OSError as error:
        raise ValueError(
            f"{parameter}: {location!r} is not writable ({error.strerror} in {probe_dir!r})"
        ) from error


def _fsync_folder(path: str) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be opened
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def write_atomically(location: str, name: str, write: Callable[[IO[bytes]], None]) -> str:
    """Write a file `name` under `location` through `write(stream)`, then publish it by rename.

    Readers never see a half-written file: the bytes go to a hidden temporary name that no
    reader lists, and only a complete file is moved to `name`. An existing file is never
    replaced. Returns the final path or URI.
    """
    fs, path = resolve(location)
    fs.create_dir(path, recursive=True)
    final = join(path, name)
    temporary = join(path, f".{name}.{uuid.uuid4().hex}{TEMPORARY_SUFFIX}")
    if fs.get_file_info(final).type != pafs.FileType.NotFound:
        raise FileExistsError(f"refusing to replace {final!r}")
    try:
        if isinstance(fs, pafs.LocalFileSystem):
            with open(temporary, "xb") as stream:
                write(stream)
                stream.flush()
                os.fsync(stream.fileno())
            # os.link fails if `final` appeared meanwhile, so no other run's file is replaced.
            try:
                os.link(temporary, final)
            except FileExistsError:
                raise
            except OSError:  # a file system without hard links (FAT, some network mounts)
                if os.path.exists(final):
                    raise FileExistsError(f"refusing to replace {final!r}") from None
                os.rename(temporary, final)
            else:
                os.remove(temporary)
            _fsync_folder(path)  # the new name survives a power cut, not only a killed process
        else:
            with fs.open_output_stream(temporary) as stream:
                write(stream)
            fs.move(temporary, final)
    except BaseException:
        with contextlib.suppress(OSError):
            fs.delete_file(temporary)
        raise
    return join(location, name) if _is_uri(location) else final

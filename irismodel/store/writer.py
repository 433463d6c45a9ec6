"""Writing whole: files through a hidden temporary and one rename, folders published at once."""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
from collections.abc import Callable
from typing import IO, Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .layout import MANIFEST, temporary_name
from .locations import absolute, check_name, child, is_uri, redact, resolve


def _fsync_folder(descriptor: int) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be synced
        os.fsync(descriptor)


@contextlib.contextmanager
def _open_folder(root: str, names: tuple[str, ...], create: bool) -> Any:
    """Yield a descriptor of `root/names...`, refusing any symbolic link below `root`."""
    descriptor = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in names:
            check_name(name)
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o777, dir_fd=descriptor)
            try:
                inner = os.open(
                    name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=descriptor
                )
            except OSError as error:
                try:
                    is_link = stat.S_ISLNK(os.lstat(name, dir_fd=descriptor).st_mode)
                except OSError:
                    is_link = False
                if is_link:
                    raise OSError(
                        error.errno, f"refusing to write through the symbolic link {name!r}"
                    ) from error
                raise
            os.close(descriptor)
            descriptor = inner
        yield descriptor
    finally:
        os.close(descriptor)


def write_file(
    root: str,
    names: tuple[str, ...] | list[str],
    write: Callable[[IO[bytes]], None],
    *,
    replace: bool = False,
) -> str:
    """Write the file `root/names...` through `write(stream)`, atomically; return its location.

    The bytes go to a hidden temporary name beside the target and are published by one rename
    (or a hard link when `replace` is false, so an existing file is never replaced), so readers
    never see a half-written file. Locally no symbolic link below `root` is followed, neither a
    folder nor the file itself (a planted link is replaced, never written through), and missing
    folders are created. `root` itself is trusted: `check_location` resolved it.
    """
    *folders, name = names
    check_name(name)
    temporary = temporary_name(name)
    if is_uri(root):
        fs, base = resolve(root)
        folder = posixpath.join(base, *folders)
        final, scratch = posixpath.join(folder, name), posixpath.join(folder, temporary)
        if not replace and fs.get_file_info(final).type != pafs.FileType.NotFound:
            raise FileExistsError(f"refusing to replace {redact(child(root, *names))!r}")
        fs.create_dir(folder, recursive=True)
        try:
            with fs.open_output_stream(scratch) as stream:
                write(stream)
            fs.move(scratch, final)
        except BaseException:
            with contextlib.suppress(OSError):
                fs.delete_file(scratch)
            raise
        return child(root, *names)
    root = absolute(root)
    os.makedirs(root, exist_ok=True)
    with _open_folder(root, tuple(folders), create=True) as folder:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        descriptor = os.open(temporary, flags, 0o644, dir_fd=folder)
        try:
            with os.fdopen(descriptor, "wb") as stream:
                write(stream)
                stream.flush()
                os.fsync(stream.fileno())
            if replace:
                os.rename(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
            else:
                _link_or_rename(temporary, name, folder)
        except BaseException as error:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=folder)
            if isinstance(error, FileExistsError):
                raise FileExistsError(
                    f"refusing to replace {os.path.join(root, *names)!r}"
                ) from None
            raise
        _fsync_folder(folder)
    return os.path.join(root, *names)


def _link_or_rename(temporary: str, name: str, folder: int) -> None:
    """Publish `temporary` as `name` in `folder` unless `name` exists."""
    try:
        # link fails if `name` exists, so another writer's file is never replaced
        os.link(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
    except OSError as error:  # or a file system without hard links (FAT, some network mounts)
        if isinstance(error, FileExistsError) or os.path.lexists(f"/proc/self/fd/{folder}/{name}"):
            raise FileExistsError(name) from None
        os.rename(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
        return
    os.unlink(temporary, dir_fd=folder)


def write_atomically(
    location: str, name: str, write: Callable[[IO[bytes]], None], *, replace: bool = False
) -> str:
    """Write the file `name` in the folder `location` atomically (see `write_file`)."""
    return write_file(location, (name,), write, replace=replace)


def publish_folder(
    root: str,
    source: tuple[str, ...],
    target: str,
    *,
    skip: tuple[str, ...] = (),
    resume: bool = False,
) -> str:
    """Move the folder `root/source...` to `root/target` as one step; return the new location.

    Locally one rename: readers see all of the folder or none of it. On an object store, which
    has no folders to rename, the files move one by one and `_run.json`, which readers wait for,
    moves last; files named in `skip` stay behind and go with the source. An existing target is
    never replaced, except with `resume` on an object store: the moves of a publication that was
    cut short are finished.
    """
    check_name(target)
    if is_uri(root):
        fs, base = resolve(root)
        src, dst = posixpath.join(base, *source), posixpath.join(base, target)
        if not resume and fs.get_file_info(dst).type != pafs.FileType.NotFound:
            raise FileExistsError(f"refusing to replace {redact(child(root, target))!r}")
        files = [
            f
            for f in fs.get_file_info(pafs.FileSelector(src, recursive=True, allow_not_found=True))
            if f.type == pafs.FileType.File and f.base_name not in skip
        ]
        files.sort(key=lambda f: f.base_name == MANIFEST)
        for info in files:
            fs.move(info.path, posixpath.join(dst, posixpath.relpath(info.path, src)))
        with contextlib.suppress(OSError):
            fs.delete_dir(src)
        return child(root, target)
    root = absolute(root)
    *parents, name = source
    with (
        _open_folder(root, tuple(parents), create=False) as parent,
        _open_folder(root, (), create=False) as top,
    ):
        check_name(name)
        if os.path.lexists(os.path.join(root, target)):
            raise FileExistsError(f"refusing to replace {os.path.join(root, target)!r}")
        os.rename(name, target, src_dir_fd=parent, dst_dir_fd=top)
        _fsync_folder(top)
        _fsync_folder(parent)
    return os.path.join(root, target)


def write_parquet(table: pa.Table, stream: Any) -> None:
    """Write `table` to `stream` as Parquet: zstd, and no dictionary for the float curves."""
    dictionary = [name for name in table.column_names if not name.endswith("loss_curve")]
    pq.write_table(table, stream, compression="zstd", use_dictionary=dictionary)

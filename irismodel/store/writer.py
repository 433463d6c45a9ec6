"""Writing whole: files through a hidden temporary and one rename, folders published at once."""

import contextlib
import os
import posixpath
from collections.abc import Callable, Iterator
from typing import IO, Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .layout import MANIFEST, temporary_name
from .locations import absolute, check_name, child, is_uri, redact, resolve

Names = tuple[str, ...] | list[str]  # a path below a root, one name a folder or the file
Write = Callable[[IO[bytes]], None]  # writes a file's bytes to the stream it is given


def _fsync(descriptor: int) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be synced
        os.fsync(descriptor)


@contextlib.contextmanager
def _open_folder(root: str, names: Names, create: bool) -> Iterator[int]:
    """Yield a descriptor of `root/names...`, refusing any symbolic link below `root`."""
    descriptor = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in names:
            check_name(name)
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o777, dir_fd=descriptor)
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
            try:
                inner = os.open(name, flags, dir_fd=descriptor)
            except OSError as error:
                if os.path.islink(f"/proc/self/fd/{descriptor}/{name}"):
                    message = f"refusing to write through the symbolic link {name!r}"
                    raise OSError(error.errno, message) from error
                raise
            os.close(descriptor)
            descriptor = inner
        yield descriptor
    finally:
        os.close(descriptor)


def _link_or_rename(temporary: str, name: str, folder: int) -> None:
    """Publish `temporary` as `name` in `folder` unless `name` exists."""
    try:  # a link fails if `name` exists, so another writer's file is never replaced
        os.link(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
    except OSError as error:  # or a file system without hard links (FAT, some network mounts)
        if isinstance(error, FileExistsError) or os.path.lexists(f"/proc/self/fd/{folder}/{name}"):
            raise FileExistsError(name) from None
        os.rename(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
        return
    os.unlink(temporary, dir_fd=folder)


def write_file(root: str, names: Names, write: Write, *, replace: bool = False) -> str:
    """Write the file `root/names...` through `write(stream)`, atomically; return its location.

    An existing file is replaced only with `replace`. Locally missing folders are created and no
    symbolic link below `root` is followed; `root` itself is trusted (`check_location`'s).
    """
    *folders, name = names
    temporary = temporary_name(check_name(name))
    root = absolute(root)
    location = child(root, *names)
    exists = FileExistsError(f"refusing to replace {redact(location)!r}")
    if is_uri(root):
        fs, base = resolve(root)
        folder = posixpath.join(base, *folders)
        final, scratch = posixpath.join(folder, name), posixpath.join(folder, temporary)
        if not replace and fs.get_file_info(final).type != pafs.FileType.NotFound:
            raise exists
        fs.create_dir(folder, recursive=True)
        try:
            with fs.open_output_stream(scratch) as stream:
                write(stream)
            fs.move(scratch, final)
        except BaseException:
            with contextlib.suppress(OSError):
                fs.delete_file(scratch)
            raise
        return location
    os.makedirs(root, exist_ok=True)
    with _open_folder(root, folders, create=True) as folder:
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
                raise exists from None
            raise
        _fsync(folder)
    return location


def write_atomically(location: str, name: str, write: Write, *, replace: bool = False) -> str:
    """Write the file `name` in the folder `location` atomically (see `write_file`)."""
    return write_file(location, (name,), write, replace=replace)


def publish_folder(
    root: str, source: tuple[str, ...], target: str, *, skip: tuple = (), resume: bool = False
) -> str:
    """Move the folder `root/source...` to `root/target` as one step; return the new location.

    On an object store files move one by one, `_run.json` (which readers wait for) last, those
    in `skip` stay; `resume` finishes a cut-short move. An existing target is never replaced.
    """
    root, location = absolute(root), child(root, check_name(target))
    exists = FileExistsError(f"refusing to replace {redact(location)!r}")
    if is_uri(root):
        fs, base = resolve(root)
        src, dst = posixpath.join(base, *source), posixpath.join(base, target)
        if not resume and fs.get_file_info(dst).type != pafs.FileType.NotFound:
            raise exists
        found = fs.get_file_info(pafs.FileSelector(src, recursive=True, allow_not_found=True))
        files = [f for f in found if f.type == pafs.FileType.File and f.base_name not in skip]
        for info in sorted(files, key=lambda f: f.base_name == MANIFEST):
            fs.move(info.path, posixpath.join(dst, posixpath.relpath(info.path, src)))
        with contextlib.suppress(OSError):
            fs.delete_dir(src)
        return location
    *parents, name = source
    with _open_folder(root, parents, create=False) as parent, _open_folder(root, (), False) as top:
        if os.path.lexists(location):
            raise exists
        os.rename(check_name(name), target, src_dir_fd=parent, dst_dir_fd=top)
        _fsync(top)
        _fsync(parent)
    return location


def write_parquet(table: pa.Table, stream: Any) -> None:
    """Write `table` to `stream` as Parquet: zstd; the float lists (curves, weights) byte-split.

    BYTE_STREAM_SPLIT puts each float's bytes in four streams, so zstd finds the exponents'
    regularity: curves take about 28% fewer bytes, written about 18% faster, than dictionary.
    The float lists carry no min/max statistics (no reader filters on a curve's smallest value;
    computing them was a tenth of the write); every other column keeps its statistics.
    """
    floats = [f.name for f in table.schema if f.type == pa.list_(pa.float32())]
    scalars = [name for name in table.column_names if name not in floats]
    split = {f"{name}.list.element": "BYTE_STREAM_SPLIT" for name in floats}
    pq.write_table(
        table,
        stream,
        compression="zstd",
        use_dictionary=scalars,
        column_encoding=split,
        write_statistics=scalars,
    )

"""Locations: local paths or `pyarrow.fs` URIs, checked in bounded time, shown without secrets."""

import contextlib
import functools
import os
import posixpath
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

from .layout import MANIFEST, STAGING, temporary_name

# How long a location may take to answer a check before it is reported as unreachable: a gs://
# location without credentials otherwise retries for 15 minutes without a word.
CHECK_TIMEOUT_SECONDS = float(os.environ.get("IRIS_SWEEP_LOCATION_TIMEOUT", "20"))
# The longest name and path a run writes below its output location (`.staging/<run>/<part>`,
# temporaries included); checked up front so that a long location fails at validation.
LONGEST_RELATIVE_PATH = 240
_SECRET_QUERY = re.compile(r"key|secret|token|password|credential|signature", re.IGNORECASE)
T = TypeVar("T")


def is_uri(location: str) -> bool:
    """Whether `location` is a URI (`scheme://...`) rather than a local path."""
    return "://" in location


def absolute(location: str) -> str:
    """Return a local path made absolute (so every process of a cluster means the same folder)."""
    return location if is_uri(location) else os.path.abspath(os.path.expanduser(location))


def redact(location: str) -> str:
    """Return `location` fit to show or store: credentials and secret query values replaced."""
    if not is_uri(location):
        return location
    parts = urlsplit(location)
    netloc = "***@" + parts.netloc.rsplit("@", 1)[1] if "@" in parts.netloc else parts.netloc
    query = [(k, "***" if _SECRET_QUERY.search(k) else v) for k, v in parse_qsl(parts.query)]
    return parts._replace(netloc=netloc, query=urlencode(query)).geturl()


def child(location: str, *names: str) -> str:
    """Return the location of `names` below `location`, keeping a URI's query options last."""
    names = tuple(check_name(name) for name in names)
    if not is_uri(location):
        return os.path.join(location, *names)
    parts = urlsplit(location)
    return parts._replace(path=posixpath.join(parts.path.rstrip("/") or "/", *names)).geturl()


def check_name(name: str) -> str:
    """Return `name` if it is a plain file name; refuse anything that could leave its folder."""
    if not name or name in (".", "..") or any(c in name for c in ("/", "\\", "\0")):
        message = f"refusing file name {name!r}: it must be a plain name inside the location"
        raise ValueError(message)
    return name


_filesystem = functools.lru_cache(maxsize=64)(pafs.FileSystem.from_uri)


def resolve(location: str, parameter: str = "output_dir") -> tuple[pafs.FileSystem, str]:
    """Return the file system and path in it of a path or URI; `ValueError` names `parameter`."""
    if not is_uri(location):
        return pafs.LocalFileSystem(), absolute(location)
    try:
        return _filesystem(location)
    except (pa.ArrowException, OSError, ValueError) as error:  # ArrowInvalid is a ValueError
        reason = first_line(error)
        raise ValueError(f"{parameter}: cannot open {redact(location)!r}: {reason}") from error


def first_line(error: BaseException) -> str:
    """Return the first line of an error's message (its type's name if it has none)."""
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def within_time(what: str, function: Callable[[], T], seconds: float | None = None) -> T:
    """Return `function()`, or raise `ValueError` saying `what` did not answer within `seconds`."""
    seconds = CHECK_TIMEOUT_SECONDS if seconds is None else seconds
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = function()
        except BaseException as error:  # handed to the caller's thread below
            outcome["error"] = error

    # a daemon thread: a store that never answers leaves it behind, not the caller
    thread = threading.Thread(target=target, name="iris-sweep-location-check", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise ValueError(
            f"{what} did not answer within {seconds:g} s; check the address, the network and "
            "the credentials in the environment"
        )
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def check_location(location: str, parameter: str = "output_dir") -> str:
    """Return the absolute location if files can be created under it, else raise `ValueError`.

    Refuses credentials in a URI, a file, a bad link, a path too long, a location inside a run,
    and one that does not answer within `CHECK_TIMEOUT_SECONDS`; a probe file leaves nothing.
    """
    if not isinstance(location, str) or not location.strip():
        raise ValueError(f"{parameter}: expected a folder path or URI, got {location!r}")
    if is_uri(location):
        parts, shown = urlsplit(location), f"{parameter}: {redact(location)!r}"
        if "@" in parts.netloc:  # a user part alone (`s3://KEY@bucket`) is a secret too
            raise ValueError(
                f"{shown} holds credentials (user@ or user:secret@); "
                "they would be stored with the results, in logs and in Prefect's database. Give "
                "them through the environment instead (AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY for s3://, GOOGLE_APPLICATION_CREDENTIALS for gs://)"
            )
        if parts.scheme == "file":
            return check_location(parts.path, parameter)
        return within_time(shown, lambda: _check_remote(location, parameter))
    return _check_local(absolute(location), parameter)


def _check_local(path: str, parameter: str) -> str:
    if os.path.islink(path) and not os.path.exists(path):
        raise ValueError(
            f"{parameter}: {path!r} is a symbolic link to nothing (or a loop of links); "
            "give a folder, or a link to one"
        )
    real = os.path.realpath(path)
    existing = real  # the nearest existing folder: probed, and asked for the limits
    while not os.path.isdir(existing):
        if os.path.lexists(existing) and existing == real:
            raise ValueError(f"{parameter}: {path!r} is a file; it must be a folder")
        if os.path.lexists(existing):
            raise ValueError(f"{parameter}: {path!r} cannot be created: {existing!r} is a file")
        existing = os.path.dirname(existing)
    max_name, max_path = 255, 4096
    with contextlib.suppress(OSError, ValueError):  # limits unknown: keep the usual ones
        max_name = os.pathconf(existing, "PC_NAME_MAX")
        max_path = os.pathconf(existing, "PC_PATH_MAX")
    if len(real) + LONGEST_RELATIVE_PATH > max_path:
        raise ValueError(
            f"{parameter}: {path!r} is too long: runs write paths up to {LONGEST_RELATIVE_PATH} "
            f"characters below it, and this system allows {max_path} in all"
        )
    if too_long := [part for part in real.split(os.sep) if len(part) > max_name]:
        raise ValueError(
            f"{parameter}: the folder name {too_long[0][:40]!r}... is longer than this file "
            f"system's {max_name} characters"
        )
    above = (Path(real), *Path(real).parents)
    inside = next((f for f in above if f.name == STAGING or os.path.isfile(f / MANIFEST)), None)
    if inside is not None:
        raise ValueError(
            f"{parameter}: {path!r} is inside {str(inside)!r}, a run's folder or a staging folder "
            "of another output location; give a folder of its own"
        )
    staging = os.path.join(real, STAGING)
    if os.path.islink(staging):
        raise ValueError(
            f"{parameter}: {staging!r} is a symbolic link; runs are built in a folder of the "
            "output location itself, never through a link: remove it"
        )
    if os.path.lexists(staging) and not os.path.isdir(staging):
        raise ValueError(
            f"{parameter}: {staging!r} must be the folder where runs are built, and it is a "
            "file; remove it or give another folder"
        )
    for folder in [existing, *([staging] if os.path.isdir(staging) else [])]:  # both written
        probe = os.path.join(folder, temporary_name("probe"))
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
            os.remove(probe)
        except OSError as error:
            reason = f"{error.strerror} in {folder!r}"
            raise ValueError(f"{parameter}: {path!r} is not writable ({reason})") from error
    return real


def _check_remote(location: str, parameter: str) -> str:
    fs, path = resolve(location, parameter)
    shown = f"{parameter}: {redact(location)!r}"
    try:
        if fs.get_file_info(path).type == pafs.FileType.File:
            raise ValueError(f"{shown} is a file; it must be a folder")
        probe = posixpath.join(path, temporary_name("probe"))
        with fs.open_output_stream(probe) as stream:
            stream.write(b"")
        fs.delete_file(probe)
    except (OSError, pa.ArrowException) as error:
        raise ValueError(f"{shown} cannot be written: {first_line(error)}") from error
    if len(path) + LONGEST_RELATIVE_PATH > 1024:  # the object key limit of S3 and GCS
        raise ValueError(f"{shown} is too long for object keys")
    return location


def read_bytes(location: str) -> bytes:
    """Return the bytes of the file at `location` (a path or URI)."""
    fs, path = resolve(location)
    with fs.open_input_stream(path) as stream:
        return stream.read()


def entries(fs: pafs.FileSystem, path: str) -> list[pafs.FileInfo]:
    """Return the entries directly inside the folder `path` of `fs`, or [] if there is none."""
    return fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))


def list_folder(location: str) -> list[pafs.FileInfo]:
    """Return the entries directly inside `location`, or [] if it does not exist."""
    return entries(*resolve(location))


def split(location: str) -> tuple[str, str]:
    """Return (folder, file name) of a file's location; a URI's query stays with the folder."""
    if not is_uri(location):
        return os.path.dirname(location) or ".", os.path.basename(location)
    parts = urlsplit(location)
    folder, name = posixpath.split(parts.path)
    return parts._replace(path=folder).geturl(), name


def base_name(location: str) -> str:
    """Return the last name of a path or URI's path: never its query options."""
    return os.path.basename((urlsplit(location).path if is_uri(location) else location).rstrip("/"))


def browser_url(location: str) -> str | None:
    """Return the console address of an AWS S3 or Google Cloud Storage `location`, else None."""
    if not is_uri(location):
        return None
    parts = urlsplit(location)
    query = dict(parse_qsl(parts.query))
    key = parts.path.strip("/")
    if parts.scheme == "s3" and "endpoint_override" not in query:
        return f"https://s3.console.aws.amazon.com/s3/buckets/{parts.netloc}?prefix={key}/"
    if parts.scheme in ("gs", "gcs") and "endpoint_override" not in query:
        return f"https://console.cloud.google.com/storage/browser/{parts.netloc}/{key}"
    return None

"""Every name a run leaves on disk, in one place: folders, files, metadata keys and statuses."""

import os
import re
import socket
import uuid
from datetime import datetime

import pyarrow.fs as pafs

FILE_PREFIX = "iris-sweep-"
FILE_SUFFIX = ".parquet"
STAGING = ".staging"  # where runs are built, below the output location
MANIFEST = "_run.json"
MANIFEST_FORMAT = "iris-sweep-run/2"
LOCK = "_writer"  # the mark of the process writing a run, in its staging folder
TEMPORARY_SUFFIX = ".tmp"

META_SCHEMA_VERSION = b"iris_sweep.schema_version"
META_PARAMETERS = b"iris_sweep.parameters"
META_VERSIONS = b"iris_sweep.versions"
META_STATUS = b"iris_sweep.status"
META_FAILED = b"iris_sweep.failed"
META_RUN_ID = b"iris_sweep.run_id"
META_SHARD = b"iris_sweep.shard"
META_WRITER = b"iris_sweep.writer"
META_PROVENANCE = b"iris_sweep.provenance"  # code version and hardware of the writing process

STATUS_RUNNING = "running"
STATUS_FAILED = "failed"
STATUS_COMPLETE = "complete"
STATUS_PARTIAL = "partial"  # rows of an unfinished run, read with include_unfinished

_RUN_FOLDER = re.compile(rf"{FILE_PREFIX}\d{{8}}T\d{{6}}Z-(.+)")


def safe_id(run_id: str) -> str:
    """Return `run_id` fit for a file name: only letters, digits, '-' and '_' survive."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", run_id)[:64] or "run"


def run_folder_name(run_id: str, started_at: datetime) -> str:
    """Return the folder name of a run, `iris-sweep-<UTC start>Z-<safe run id>`."""
    return f"{FILE_PREFIX}{started_at:%Y%m%dT%H%M%S}Z-{safe_id(run_id)}"


def folder_run_id(name: str) -> str | None:
    """Return the (safe) run id in a run folder's name, or None if `name` is not one."""
    match = _RUN_FOLDER.fullmatch(name)
    return match.group(1) if match else None


def is_hidden(name: str) -> bool:
    """Whether a name is none of the results: staging, temporaries, manifests, report files."""
    return name.startswith((".", "_"))


def is_part(entry: pafs.FileInfo) -> bool:
    """Whether a folder entry is a results file (a part, or a version 1 run's single file)."""
    name = entry.base_name
    return entry.type == pafs.FileType.File and name.endswith(FILE_SUFFIX) and not is_hidden(name)


def is_run_folder(entry: pafs.FileInfo) -> bool:
    """Whether a folder entry is a run's folder (`iris-sweep-...`)."""
    name, folder = entry.base_name, entry.type == pafs.FileType.Directory
    return folder and name.startswith(FILE_PREFIX) and not name.endswith(FILE_SUFFIX)


def temporary_name(name: str) -> str:
    """Return a hidden, unique name to write `name` under before it is published."""
    return f".{name}.{uuid.uuid4().hex}{TEMPORARY_SUFFIX}"


def is_temporary(name: str) -> bool:
    """Whether `name` is a temporary (`temporary_name`), left there if its writer was killed."""
    return name.startswith(".") and name.endswith(TEMPORARY_SUFFIX)


def configuration_name(hidden_dim: int, optimizer: str) -> str:
    """Return the name of a (hidden_dim, optimizer) configuration, e.g. `h8-sgd`."""
    return f"h{hidden_dim}-{optimizer}"


def writer_id(pid: int | None = None) -> str:
    """Return `host:pid` of a process (this one by default): who wrote a part, who holds a run."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"

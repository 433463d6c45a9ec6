"""The results table: its Arrow schema, part files written where rows are made, and the reader.

Layout (schema version 2 and later): one folder per run,
`<output_dir>/iris-sweep-<UTC start>Z-<run id>/`, holding one Parquet part file per shard
(`h8-sgd-0003.parquet`) and the run's manifest `_run.json`. A run is built in
`<output_dir>/.staging/<run folder>/` and published by moving that folder as a whole, so a
reader sees every part of a finished run or nothing of it. Version 1 (iris-sweep 0.1) wrote one
file per run, `<output_dir>/iris-sweep-<UTC start>Z-<run id>.parquet`; such files are still
listed and read, with the columns added since filled with nulls.
"""

from __future__ import annotations

import json
import platform
import posixpath
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from importlib import metadata
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from irismodel import storage

# Version 4 changed what `outcome` means (judged on the final tenth of the epochs, with
# `oscillating`) and added no column: version 3 files read as they are.
SCHEMA_VERSION = "4"
READABLE_VERSIONS = ("1", "2", "3", "4")
FILE_PREFIX = "iris-sweep-"
FILE_SUFFIX = ".parquet"
MANIFEST = "_run.json"
STAGING = ".staging"
META_SCHEMA_VERSION = b"iris_sweep.schema_version"
META_PARAMETERS = b"iris_sweep.parameters"
META_VERSIONS = b"iris_sweep.versions"
META_STATUS = b"iris_sweep.status"
META_FAILED = b"iris_sweep.failed"
META_RUN_ID = b"iris_sweep.run_id"
META_SHARD = b"iris_sweep.shard"
META_WRITER = b"iris_sweep.writer"
STATUS_COMPLETE = "complete"
STATUS_PARTIAL = "partial"

_METRIC_FIELDS = [
    pa.field(f"{part}_{metric}", pa.float64())
    for part in ("train", "test")
    for metric in ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
]

SCHEMA = pa.schema(
    [
        pa.field("flow_run_id", pa.string(), nullable=False),
        pa.field("run_started_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("run_status", pa.string(), nullable=False),
        pa.field("hidden_dim", pa.int32(), nullable=False),
        pa.field("optimizer", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("learning_rate", pa.float64(), nullable=False),
        pa.field("epochs", pa.int32(), nullable=False),
        pa.field("test_size", pa.float64(), nullable=False),
        pa.field("split_seed", pa.int64(), nullable=False),
        pa.field("standardize", pa.bool_(), nullable=False),
        pa.field("positive_class", pa.string(), nullable=False),
        pa.field("data_source", pa.string(), nullable=False),
        pa.field("data_fingerprint", pa.string(), nullable=False),
        pa.field("n_train", pa.int32(), nullable=False),
        pa.field("n_test", pa.int32(), nullable=False),
        pa.field("n_train_positive", pa.int32()),
        pa.field("n_test_positive", pa.int32()),
        pa.field("device", pa.string(), nullable=False),
        pa.field("engine", pa.string(), nullable=False),
        pa.field("worker", pa.string(), nullable=False),
        pa.field("shard", pa.string()),
        pa.field("loss_curve", pa.list_(pa.float32()), nullable=False),
        pa.field("final_train_loss", pa.float64()),
        pa.field("diverged", pa.bool_(), nullable=False),
        *_METRIC_FIELDS,
        pa.field("train_seconds", pa.float64(), nullable=False),
        pa.field("outcome", pa.string()),
        pa.field("baseline_loss", pa.float64()),
        pa.field("reference_checked", pa.bool_()),
        pa.field("reference_epochs", pa.int32()),
        pa.field("reference_max_abs_diff", pa.float64()),
        pa.field("reference_agrees", pa.bool_()),
        pa.field("reference_loss_curve", pa.list_(pa.float32())),
    ]
)
COLUMNS = tuple(SCHEMA.names)
# Columns added by schema versions 2 and 3; older files read with them null.
ADDED_IN_2 = ("n_train_positive", "n_test_positive", "shard")
ADDED_IN_3 = (
    "outcome",
    "baseline_loss",
    "reference_checked",
    "reference_epochs",
    "reference_max_abs_diff",
    "reference_agrees",
    "reference_loss_curve",
)
SCHEMA_V2 = pa.schema([f for f in SCHEMA if f.name not in ADDED_IN_3])
SCHEMA_V1 = pa.schema([f for f in SCHEMA_V2 if f.name not in ADDED_IN_2])
SCHEMAS = {"1": SCHEMA_V1, "2": SCHEMA_V2, "3": SCHEMA, "4": SCHEMA}


class ResultsError(ValueError):
    """A results location holds something that is not an iris-sweep results file."""


def package_versions() -> dict[str, str]:
    """Return the versions of Python and the packages that shape the results."""
    versions = {"python": platform.python_version()}
    for name in ("iris-sweep", "torch", "numpy", "scikit-learn", "pyarrow", "prefect"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def run_folder_name(run_id: str, started_at: datetime) -> str:
    """Return the folder name of a run; only letters, digits, '-' and '_' survive from the id."""
    safe_id = re.sub(r"[^A-Za-z0-9_-]", "_", run_id)[:64] or "run"
    return f"{FILE_PREFIX}{started_at:%Y%m%dT%H%M%S}Z-{safe_id}"


def file_name(run_id: str, started_at: datetime) -> str:
    """Return the single-file name a version 1 run used (still read, and written by tests)."""
    return run_folder_name(run_id, started_at) + FILE_SUFFIX


def part_metadata(
    parameters: Mapping[str, Any], run_id: str, shard: str, writer: str
) -> dict[bytes, bytes | str]:
    """Return the key-value metadata of one part file: what it is, of which run, who wrote it."""
    return {
        META_SCHEMA_VERSION: SCHEMA_VERSION,
        META_PARAMETERS: json.dumps(dict(parameters), sort_keys=True),
        META_VERSIONS: json.dumps(package_versions(), sort_keys=True),
        META_RUN_ID: run_id,
        META_SHARD: shard,
        META_WRITER: writer,
    }


def to_table(
    parts: Sequence[Mapping[str, Any]] | Sequence[pa.Table],
    parameters: Mapping[str, Any],
    status: str = STATUS_COMPLETE,
    failed: Sequence[str] = (),
) -> pa.Table:
    """Build a version 1 style single-file table (with its metadata) from row dicts or tables.

    Kept for tools and tests that make results files by hand; runs write part files.
    """
    if parts and all(isinstance(part, pa.Table) for part in parts):
        table = pa.concat_tables([part.cast(SCHEMA) for part in parts])  # type: ignore[union-attr]
    else:
        columns = {name: [row.get(name) for row in parts] for name in COLUMNS}  # type: ignore[union-attr]
        table = pa.Table.from_pydict(columns, schema=SCHEMA)
    index = SCHEMA.get_field_index("run_status")
    table = table.set_column(index, SCHEMA.field(index), pa.array([status] * len(table)))
    return table.replace_schema_metadata(
        {
            META_SCHEMA_VERSION: SCHEMA_VERSION,
            META_PARAMETERS: json.dumps(dict(parameters), sort_keys=True),
            META_VERSIONS: json.dumps(package_versions(), sort_keys=True),
            META_STATUS: status,
            META_FAILED: json.dumps(list(failed)),
        }
    )


def write_results(table: pa.Table, location: str, name: str) -> str:
    """Write `table` as one Parquet file `name` in the folder `location`, atomically."""
    if not name.endswith(FILE_SUFFIX):
        raise ValueError(f"results file name {name!r} must end with {FILE_SUFFIX}")
    return storage.write_atomically(location, name, lambda stream: write_parquet(table, stream))


def write_parquet(table: pa.Table, stream: Any) -> None:
    """Write `table` to `stream` as Parquet: zstd, and no dictionary for the float curves."""
    dictionary = [name for name in table.column_names if not name.endswith("loss_curve")]
    pq.write_table(table, stream, compression="zstd", use_dictionary=dictionary)


def _is_run_folder(info: pafs.FileInfo) -> bool:
    return (
        info.type == pafs.FileType.Directory
        and info.base_name.startswith(FILE_PREFIX)
        and not info.base_name.endswith(FILE_SUFFIX)
    )


def _parts(fs: pafs.FileSystem, folder: str, run: bool = False) -> list[str] | None:
    """Return the part files of a published run folder, or None if it has no manifest yet.

    With `run` (`folder` is a run's folder), a missing manifest is an error naming the folder,
    unless the run's staging folder is still there (an object-store publication moving files).
    """
    entries = fs.get_file_info(pafs.FileSelector(folder, recursive=False))
    if not any(e.base_name == MANIFEST and e.type == pafs.FileType.File for e in entries):
        parent, name = posixpath.split(folder.rstrip("/"))
        staged = posixpath.join(parent, STAGING, name)
        if run and fs.get_file_info(staged).type != pafs.FileType.Directory:
            raise ResultsError(
                f"results: the run folder {folder!r} has no {MANIFEST}: it cannot be told "
                "complete (was the manifest removed?); restore it, or move the folder away"
            )
        return None  # an object-store publication still moving its files
    parts = sorted(
        e.path
        for e in entries
        if e.type == pafs.FileType.File
        and e.base_name.endswith(FILE_SUFFIX)
        and not e.base_name.startswith((".", "_"))
    )
    try:
        with fs.open_input_stream(f"{folder.rstrip('/')}/{MANIFEST}") as stream:
            manifest = json.loads(stream.read())
        if not isinstance(manifest, dict):
            raise TypeError("not a JSON object")
        expected = int(manifest["shards"]) if manifest.get("status") == "complete" else None
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as error:
        raise ResultsError(f"results: {folder!r} has an unreadable {MANIFEST} ({error})") from error
    if expected is not None and len(parts) != expected:
        raise ResultsError(
            f"results: the run folder {folder!r} holds {len(parts)} part files of the "
            f"{expected} its {MANIFEST} lists; the run is incomplete (files were removed or added)"
        )
    return parts


def check_part(path: str, metadata: Mapping[bytes, bytes] | None) -> None:
    """Refuse a part file that is not what its place says: another run's, or another shard's.

    A part in a run folder `...Z-<run id>/<shard>.parquet` carries its run id and shard in its
    metadata; a part copied in from another run, or under another shard's name, does not match.
    """
    meta = metadata or {}
    folder, name = posixpath.split(path.replace("\\", "/"))
    folder_name = posixpath.basename(folder)
    match = re.fullmatch(rf"{FILE_PREFIX}\d{{8}}T\d{{6}}Z-(.+)", folder_name)
    if match is None or META_RUN_ID not in meta:
        return  # a version 1 single file, or a file read on its own
    run_id = meta[META_RUN_ID].decode(errors="replace")
    shard = meta.get(META_SHARD, b"").decode(errors="replace")
    if re.sub(r"[^A-Za-z0-9_-]", "_", run_id)[:64] != match.group(1):
        raise ResultsError(
            f"results: {path!r} belongs to run {run_id!r}, not to the run of its folder; a part "
            "was copied in from another run: remove it and restore the run's own"
        )
    if shard + FILE_SUFFIX != name:
        raise ResultsError(
            f"results: {path!r} holds shard {shard!r}, not the shard its name says; a part was "
            "copied under another name: remove it"
        )


def list_result_files(location: str, include_unfinished: bool = False) -> list[str]:
    """Return every published results Parquet file under `location`, sorted.

    `location` is an output folder (every run in it), one run's folder, or one file. Version 2
    runs contribute their part files, version 1 runs their single file. Unfinished runs (their
    shards in `.staging`) are listed only with `include_unfinished`; temporaries never are.
    """
    fs, path = storage.resolve(location)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise ResultsError(f"results: no such location {storage.redact(location)!r}")
    if info.type == pafs.FileType.File:
        return [path]
    own = _parts(fs, path)  # a run folder given by name: without a manifest, its files
    if own is not None and _is_run_folder(info):
        return own
    files: list[str] = []
    folders = [path]
    if include_unfinished:
        staging = f"{path.rstrip('/')}/{STAGING}"
        if fs.get_file_info(staging).type == pafs.FileType.Directory:
            folders.append(staging)
    for folder in folders:
        for entry in fs.get_file_info(pafs.FileSelector(folder, recursive=False)):
            name = entry.base_name
            if name.startswith((".", "_")):
                continue
            if entry.type == pafs.FileType.File and name.endswith(FILE_SUFFIX):
                files.append(entry.path)
            elif _is_run_folder(entry):
                parts = _parts(fs, entry.path, run=folder == path)
                if parts is None and folder != path:  # an unfinished run: no manifest check
                    parts = sorted(
                        e.path
                        for e in fs.get_file_info(pafs.FileSelector(entry.path))
                        if e.base_name.endswith(FILE_SUFFIX)
                        and not e.base_name.startswith((".", "_"))
                    )
                files.extend(parts or [])
    return sorted(files)


def _upgrade(table: pa.Table, version: str) -> pa.Table:
    """Return a table of an older schema version in the current schema (added columns null)."""
    if version == SCHEMA_VERSION:
        return table
    columns = []
    for field in SCHEMA:
        if field.name in table.column_names:
            columns.append(table.column(field.name))
        else:
            columns.append(pa.nulls(len(table), field.type))
    return pa.Table.from_arrays(columns, schema=SCHEMA).replace_schema_metadata(
        table.schema.metadata
    )


def read_table(
    path: str, filesystem: pafs.FileSystem | None = None, columns: Sequence[str] | None = None
) -> pa.Table:
    """Read one results file and check it is iris-sweep's; raise `ResultsError` naming it if not.

    Files of an older schema version come back in the current schema.
    """
    try:
        table = pq.read_table(path, filesystem=filesystem)
    except (pa.ArrowException, OSError) as error:
        raise ResultsError(
            f"results: cannot read {path!r}: not a readable Parquet file ({error})"
        ) from error
    meta = table.schema.metadata or {}
    version = meta.get(META_SCHEMA_VERSION)
    if version is None:
        raise ResultsError(
            f"results: {path!r} is not an iris-sweep results file (no schema version)"
        )
    version_text = version.decode(errors="replace")
    if version_text not in READABLE_VERSIONS:
        raise ResultsError(
            f"results: {path!r} has schema version {version_text}; this reader reads "
            f"versions {', '.join(READABLE_VERSIONS)}"
        )
    expected = SCHEMAS[version_text]
    if not table.schema.equals(expected, check_metadata=False):
        raise ResultsError(f"results: {path!r} does not match the results schema")
    check_part(path, meta)
    table = _upgrade(table, version_text)
    return table.select(list(columns)) if columns is not None else table


def read_results(
    location: str,
    flow_run_ids: Iterable[str] | None = None,
    on_foreign: str = "error",
    include_unfinished: bool = False,
) -> pd.DataFrame:
    """Load every published run's results under `location` as one pandas DataFrame, checked.

    `flow_run_ids` keeps only those runs. A file that is not an iris-sweep results file raises
    `ResultsError` naming it, or, with `on_foreign="skip"`, is skipped with a warning.
    `include_unfinished` adds the shards of runs that have not finished (failed, interrupted or
    still running; see the README), with `run_status` "partial".
    """
    if on_foreign not in ("error", "skip"):
        raise ValueError(f"on_foreign: {on_foreign!r} is not allowed; valid are 'error', 'skip'")
    if isinstance(flow_run_ids, str):
        raise ValueError(
            f"flow_run_ids: expected a list of run ids, got the string {flow_run_ids!r}; "
            "write [id] for one run"
        )
    fs, root = storage.resolve(location)
    wanted = None if flow_run_ids is None else {str(run) for run in flow_run_ids}
    staging = f"{root.rstrip('/')}/{STAGING}/"
    tables = []
    for path in list_result_files(location, include_unfinished=include_unfinished):
        try:
            table = read_table(path, fs)
        except ResultsError as error:
            if on_foreign == "error":
                raise
            warnings.warn(f"skipping {path}: {error}", stacklevel=2)
            continue
        if path.startswith(staging):
            index = SCHEMA.get_field_index("run_status")
            status = pa.array([STATUS_PARTIAL] * len(table))
            table = table.set_column(index, SCHEMA.field(index), status)
        if wanted is not None:
            keep = pa.array(sorted(wanted), type=pa.string())
            table = table.filter(pc.is_in(table["flow_run_id"], keep))
        tables.append(table.replace_schema_metadata(None))
    table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
    return table.to_pandas()


def file_metadata(path: str) -> dict[str, Any]:
    """Return a run's metadata: schema version, parameters, versions, status, failed shards.

    `path` is a run folder (its `_run.json`), a part file or a version 1 single file.
    """
    fs, inner = storage.resolve(path)
    if fs.get_file_info(inner).type == pafs.FileType.Directory:
        try:
            manifest = json.loads(storage.read_bytes(storage.child(path, MANIFEST)))
            if not isinstance(manifest, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError, RecursionError) as error:
            raise ResultsError(f"results: {path!r} has no readable {MANIFEST} ({error})") from error
        return {
            "schema_version": str(manifest.get("schema_version", "")),
            "parameters": manifest.get("parameters", {}),
            "versions": manifest.get("versions", {}),
            "status": manifest.get("status", ""),
            "failed": manifest.get("failed", []),
        }
    try:
        meta = pq.read_schema(inner, filesystem=fs).metadata or {}
    except (pa.ArrowException, OSError) as error:
        raise ResultsError(
            f"results: cannot read {path!r}: not a readable Parquet file ({error})"
        ) from error
    return {
        "schema_version": meta.get(META_SCHEMA_VERSION, b"").decode(),
        "parameters": json.loads(meta.get(META_PARAMETERS, b"{}")),
        "versions": json.loads(meta.get(META_VERSIONS, b"{}")),
        "status": meta.get(META_STATUS, STATUS_COMPLETE.encode()).decode(),
        "failed": json.loads(meta.get(META_FAILED, b"[]")),
    }

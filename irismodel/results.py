"""The results table: its Arrow schema, atomic Parquet files (one per run), and the reader."""

from __future__ import annotations

import json
import platform
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from importlib import metadata
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from irismodel import storage

SCHEMA_VERSION = "1"
FILE_PREFIX = "iris-sweep-"
FILE_SUFFIX = ".parquet"
META_SCHEMA_VERSION = b"iris_sweep.schema_version"
META_PARAMETERS = b"iris_sweep.parameters"
META_VERSIONS = b"iris_sweep.versions"
META_STATUS = b"iris_sweep.status"
META_FAILED = b"iris_sweep.failed"
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
        pa.field("device", pa.string(), nullable=False),
        pa.field("engine", pa.string(), nullable=False),
        pa.field("worker", pa.string(), nullable=False),
        pa.field("loss_curve", pa.list_(pa.float32()), nullable=False),
        pa.field("final_train_loss", pa.float64()),
        pa.field("diverged", pa.bool_(), nullable=False),
        *_METRIC_FIELDS,
        pa.field("train_seconds", pa.float64(), nullable=False),
    ]
)
COLUMNS = tuple(SCHEMA.names)


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


def rows_to_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Return row dicts (one per model, every column but `run_status`) as a table of SCHEMA."""
    columns = {name: [row[name] for row in rows] for name in COLUMNS if name != "run_status"}
    columns["run_status"] = [STATUS_COMPLETE] * len(rows)
    return pa.Table.from_pydict(columns, schema=SCHEMA)


def to_table(
    parts: Sequence[Mapping[str, Any]] | Sequence[pa.Table],
    parameters: Mapping[str, Any],
    status: str = STATUS_COMPLETE,
    failed: Sequence[str] = (),
) -> pa.Table:
    """Build a run's results table, with its file metadata, from row dicts or row tables."""
    if parts and all(isinstance(part, pa.Table) for part in parts):
        table = pa.concat_tables([part.cast(SCHEMA) for part in parts])
    else:
        table = rows_to_table(parts)  # type: ignore[arg-type]
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


def file_name(flow_run_id: str, started_at: datetime) -> str:
    """Return the results file name of a run; only letters, digits, '-' and '_' survive."""
    safe_id = re.sub(r"[^A-Za-z0-9_-]", "_", flow_run_id)[:64] or "run"
    return f"{FILE_PREFIX}{started_at:%Y%m%dT%H%M%S}Z-{safe_id}{FILE_SUFFIX}"


def write_results(table: pa.Table, location: str, name: str) -> str:
    """Write `table` as one Parquet file `name` under `location`, atomically; return its path."""
    if not name.endswith(FILE_SUFFIX):
        raise ValueError(f"results file name {name!r} must end with {FILE_SUFFIX}")
    return storage.write_atomically(
        location, name, lambda stream: pq.write_table(table, stream, compression="zstd")
    )


def list_result_files(location: str) -> list[str]:
    """Return the published results files under `location` (temporary files are never listed)."""
    fs, path = storage.resolve(location)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise ResultsError(f"results: no such location {location!r}")
    if info.type == pafs.FileType.File:
        return [path]
    selector = pafs.FileSelector(path, recursive=False)
    return sorted(
        f.path
        for f in fs.get_file_info(selector)
        if f.type == pafs.FileType.File
        and f.base_name.endswith(FILE_SUFFIX)
        and not f.base_name.startswith((".", "_"))
    )


def read_table(path: str, filesystem: pafs.FileSystem | None = None) -> pa.Table:
    """Read one results file and check it is iris-sweep's; raise `ResultsError` naming it if not."""
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
    if version.decode() != SCHEMA_VERSION:
        raise ResultsError(
            f"results: {path!r} has schema version {version.decode()}; this reader reads "
            f"version {SCHEMA_VERSION}"
        )
    if not table.schema.equals(SCHEMA, check_metadata=False):
        raise ResultsError(f"results: {path!r} does not match the results schema")
    return table


def read_results(
    location: str, flow_run_ids: Iterable[str] | None = None, on_foreign: str = "error"
) -> pd.DataFrame:
    """Load every run's results under `location` as one pandas DataFrame, schema-checked.

    `flow_run_ids` keeps only those runs. A file that is not an iris-sweep results file raises
    `ResultsError` naming it, or, with `on_foreign="skip"`, is skipped with a warning.
    """
    if on_foreign not in ("error", "skip"):
        raise ValueError(f"on_foreign: {on_foreign!r} is not allowed; valid are 'error', 'skip'")
    fs, _ = storage.resolve(location)
    tables = []
    for path in list_result_files(location):
        try:
            tables.append(read_table(path, fs))
        except ResultsError as error:
            if on_foreign == "error":
                raise
            warnings.warn(f"skipping {path}: {error}", stacklevel=2)
    if tables:
        table = pa.concat_tables([t.replace_schema_metadata(None) for t in tables])
    else:
        table = SCHEMA.empty_table()
    frame = table.to_pandas()
    if flow_run_ids is not None:
        frame = frame[frame["flow_run_id"].isin(list(flow_run_ids))].reset_index(drop=True)
    return frame


def file_metadata(path: str) -> dict[str, Any]:
    """Return a results file's metadata: schema version, parameters, versions, status, failed."""
    fs, inner = storage.resolve(path)
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
        "status": meta.get(META_STATUS, b"").decode(),
        "failed": json.loads(meta.get(META_FAILED, b"[]")),
    }

"""What a location holds: published runs' files, checked against their manifests; metadata."""

import json
import posixpath
import warnings
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from . import layout
from .locations import entries, redact, resolve


class ResultsError(ValueError):
    """A results location holds something that is not an iris-sweep results file."""


def read_manifest(
    fs: pafs.FileSystem, folder: str, error: type[ValueError] = ResultsError, what: str = "results"
) -> dict[str, Any]:
    """Return the manifest of the run folder `folder`; raise `error` naming it if unreadable."""
    try:
        with fs.open_input_stream(posixpath.join(folder, layout.MANIFEST)) as stream:
            record = json.loads(stream.read())
        if not isinstance(record, dict):
            raise TypeError("not a JSON object")
    except (OSError, ValueError, TypeError, RecursionError) as cause:
        raise error(f"{what}: {folder!r} has no readable {layout.MANIFEST} ({cause})") from cause
    return record


def unreadable(path: str, error: BaseException) -> ResultsError:
    """The error for a file that is no Parquet file at all."""
    return ResultsError(f"results: cannot read {path!r}: not a readable Parquet file ({error})")


def _parts(fs: pafs.FileSystem, folder: str, published: bool) -> list[str]:
    """Return a run folder's part files, checked against its manifest if it has one."""
    found = entries(fs, folder)
    parts = sorted(e.path for e in found if layout.is_part(e))
    if not any(e.base_name == layout.MANIFEST for e in found):
        if not published:
            return parts  # an unfinished run's, or a folder given by name
        parent, name = posixpath.split(folder.rstrip("/"))
        staged = fs.get_file_info(posixpath.join(parent, layout.STAGING, name))
        if staged.type == pafs.FileType.Directory:
            return []  # an object-store publication still moving its files
        raise ResultsError(
            f"results: the run folder {folder!r} has no {layout.MANIFEST}: it cannot be told "
            "complete (was the manifest removed?); restore it, or move the folder away"
        )
    manifest = read_manifest(fs, folder)
    if manifest.get("status") == layout.STATUS_COMPLETE and len(parts) != manifest.get("shards"):
        raise ResultsError(
            f"results: the run folder {folder!r} holds {len(parts)} part files of the "
            f"{manifest.get('shards')} its {layout.MANIFEST} lists; the run is incomplete (files "
            "were removed or added)"
        )
    return parts


def list_result_files(
    location: str, include_unfinished: bool = False, on_foreign: str = "error"
) -> list[str]:
    """Return every published results file under `location` (an output folder, a run's, a file).

    A run folder not whole raises `ResultsError`; `on_foreign="skip"` leaves it out with a warning.
    """
    if not isinstance(location, str) or not location.strip():
        raise ValueError(
            f"location: expected a results folder or file (a path or URI), got {location!r}"
        )
    fs, path = resolve(location, "location")
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise ResultsError(f"results: no such location {redact(location)!r}")
    if info.type == pafs.FileType.File:
        return [path]
    if layout.is_run_folder(info):  # one run's folder, given by name
        return _parts(fs, path, published=False)
    files = []
    staging = [posixpath.join(path, layout.STAGING)] if include_unfinished else []
    for folder in [path, *staging]:
        for entry in entries(fs, folder):
            if layout.is_part(entry):
                files.append(entry.path)
            elif layout.is_run_folder(entry):
                try:
                    files.extend(_parts(fs, entry.path, published=folder == path))
                except ResultsError as error:
                    if on_foreign != "skip":
                        raise
                    warnings.warn(f"skipping {entry.path}: {error}", stacklevel=2)
    return sorted(files)


def count_models(location: str) -> int:
    """Return the rows (one a model) of the results under `location`, from the files' footers."""
    fs, _ = resolve(location, "location")
    return sum(pq.read_metadata(p, filesystem=fs).num_rows for p in list_result_files(location))


def check_part(path: str, meta: dict[bytes, bytes] | None) -> None:
    """Refuse a part `...Z-<run id>/<shard>.parquet` whose metadata names another run or shard."""
    folder, name = posixpath.split(path.replace("\\", "/"))
    folder_id = layout.folder_run_id(posixpath.basename(folder))
    if folder_id is None or layout.META_RUN_ID not in (meta or {}):
        return  # a version 1 single file, or a file read on its own
    run_id = meta[layout.META_RUN_ID].decode(errors="replace")
    shard = meta.get(layout.META_SHARD, b"").decode(errors="replace")
    if layout.safe_id(run_id) != folder_id:
        raise ResultsError(
            f"results: {path!r} belongs to run {run_id!r}, not to the run of its folder; a part "
            "was copied in from another run: remove it and restore the run's own"
        )
    if shard + layout.FILE_SUFFIX != name:
        raise ResultsError(
            f"results: {path!r} holds shard {shard!r}, not the shard its name says; a part was "
            "copied under another name: remove it"
        )


def file_metadata(path: str) -> dict[str, Any]:
    """Return the schema version, parameters, versions, status and failed shards of `path`."""
    fs, inner = resolve(path, "path")
    if fs.get_file_info(inner).type != pafs.FileType.Directory:
        try:
            meta = pq.read_schema(inner, filesystem=fs).metadata or {}
        except (pa.ArrowException, OSError) as error:
            raise unreadable(path, error) from error
        return {
            "schema_version": meta.get(layout.META_SCHEMA_VERSION, b"").decode(),
            "status": meta.get(layout.META_STATUS, layout.STATUS_COMPLETE.encode()).decode(),
            "parameters": json.loads(meta.get(layout.META_PARAMETERS, b"{}")),
            "versions": json.loads(meta.get(layout.META_VERSIONS, b"{}")),
            "failed": json.loads(meta.get(layout.META_FAILED, b"[]")),
        }
    record = read_manifest(fs, inner)  # a run folder's: its keys may be missing
    found = {k: record.get(k, v) for k, v in (("parameters", {}), ("versions", {}), ("failed", []))}
    return {"schema_version": str(record.get("schema_version", "")),
            "status": record.get("status", ""), **found}  # fmt: skip

"""The one reader of results: published runs listed and checked, each file read in the schema.

Files are read through `pyarrow.dataset` with the current schema, so the columns an older
schema version lacks come back null from the dataset itself; `read_results` reads whole files
into pandas, the report streams a few columns batch by batch (strings as dictionaries).
"""

from __future__ import annotations

import json
import os
import posixpath
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .layout import (
    FILE_PREFIX,
    FILE_SUFFIX,
    MANIFEST,
    META_FAILED,
    META_PARAMETERS,
    META_RUN_ID,
    META_SCHEMA_VERSION,
    META_SHARD,
    META_STATUS,
    META_VERSIONS,
    STAGING,
    STATUS_COMPLETE,
    STATUS_PARTIAL,
    folder_run_id,
    is_hidden,
    safe_id,
)
from .locations import redact, resolve
from .schema import SCHEMA, schema_problem

CURVE_COLUMN = "loss_curve"
REFERENCE_CURVE_COLUMN = "reference_loss_curve"
# The per-model columns the report reads (every file must hold them), and those only newer files
# hold (null in older ones); strings stay dictionary-encoded, so a million rows hold a handful.
MODEL_COLUMNS = (
    *("flow_run_id", "run_started_at", "run_status", "hidden_dim", "optimizer", "seed"),
    *("learning_rate", "epochs", "standardize", "test_size", "split_seed", "positive_class"),
    *("data_fingerprint", "n_train", "n_test", "diverged", "final_train_loss"),
    *(f"{part}_{metric}" for part in ("train", "test") for metric in ("accuracy", "precision")),
    *("train_recall", "test_recall"),
)
LATER_COLUMNS = ("engine", "outcome", "n_train_positive", "n_test_positive", "baseline_loss")
LATER_COLUMNS += ("reference_checked", "reference_epochs", "reference_max_abs_diff")
LATER_COLUMNS += ("reference_agrees",)
# Counts and flags kept as float64 in the report's frame, so that a null is a NaN.
AS_FLOAT = ("n_train_positive", "n_test_positive", "reference_checked", "reference_epochs")
AS_FLOAT += ("reference_agrees",)
_DICTIONARY = pa.dictionary(pa.int32(), pa.string())
STRING_COLUMNS = tuple(f.name for f in SCHEMA if f.type == pa.string())
_STREAMED = pa.schema([f.with_type(_DICTIONARY) if f.type == pa.string() else f for f in SCHEMA])
_STREAMED_FORMAT = ds.ParquetFileFormat(
    read_options=ds.ParquetReadOptions(dictionary_columns=STRING_COLUMNS)
)
BATCH_VALUES = 1 << 21  # loss values per batch read: 8 MB of float32
SCALAR_BATCH_ROWS = 1 << 16
READ_THREADS = max(1, min(4, os.cpu_count() or 1))  # files decoded at once; each holds a batch


class ResultsError(ValueError):
    """A results location holds something that is not an iris-sweep results file."""


def read_manifest(
    fs: pafs.FileSystem, folder: str, error: type[ValueError] = ResultsError, what: str = "results"
) -> dict[str, Any]:
    """Return the manifest of the run folder `folder`; raise `error` naming it if unreadable."""
    try:
        with fs.open_input_stream(f"{folder.rstrip('/')}/{MANIFEST}") as stream:
            record = json.loads(stream.read())
        if not isinstance(record, dict):
            raise TypeError("not a JSON object")
    except (OSError, ValueError, TypeError, RecursionError) as cause:
        raise error(f"{what}: {folder!r} has no readable {MANIFEST} ({cause})") from cause
    return record


def _files(fs: pafs.FileSystem, folder: str) -> list[pafs.FileInfo]:
    entries = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    return [e for e in entries if not is_hidden(e.base_name) or e.base_name == MANIFEST]


def _run_parts(fs: pafs.FileSystem, folder: str, published: bool) -> list[str]:
    """Return the part files of a run's folder, checked against its manifest when it has one.

    A published run (`published`) without a manifest is an error naming it, unless its staging
    folder is still there: an object-store publication moving its files, not yet to be read.
    """
    entries = _files(fs, folder)
    parts = sorted(
        e.path
        for e in entries
        if e.type == pafs.FileType.File and e.base_name.endswith(FILE_SUFFIX)
    )
    if not any(e.base_name == MANIFEST for e in entries):
        parent, name = folder.rstrip("/").rsplit("/", 1)
        if not published:
            return parts
        if fs.get_file_info(f"{parent}/{STAGING}/{name}").type == pafs.FileType.Directory:
            return []
        raise ResultsError(
            f"results: the run folder {folder!r} has no {MANIFEST}: it cannot be told "
            "complete (was the manifest removed?); restore it, or move the folder away"
        )
    manifest = read_manifest(fs, folder)
    if manifest.get("status") == STATUS_COMPLETE and len(parts) != manifest.get("shards"):
        raise ResultsError(
            f"results: the run folder {folder!r} holds {len(parts)} part files of the "
            f"{manifest.get('shards')} its {MANIFEST} lists; the run is incomplete (files were "
            "removed or added)"
        )
    return parts


def list_result_files(
    location: str, include_unfinished: bool = False, on_foreign: str = "error"
) -> list[str]:
    """Return every published results Parquet file under `location`, sorted.

    `location` is an output folder (every run in it), one run's folder, or one file. Runs give
    their part files, version 1 runs their single file. Unfinished runs (their shards in
    `.staging`) are listed only with `include_unfinished`; temporaries never are. A run folder
    that is not whole raises `ResultsError` naming it or, with `on_foreign="skip"`, is left
    out with a warning.
    """
    if not isinstance(location, str) or not location.strip():
        raise ValueError(
            f"location: expected a results folder or file (path or URI), got {location!r}"
        )
    fs, path = resolve(location, "location")
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise ResultsError(f"results: no such location {redact(location)!r}")
    if info.type == pafs.FileType.File:
        return [path]
    if info.base_name.startswith(FILE_PREFIX):  # one run's folder
        return _run_parts(fs, path, published=False)
    files: list[str] = []
    for folder in [path, *([f"{path.rstrip('/')}/{STAGING}"] if include_unfinished else [])]:
        for entry in _files(fs, folder):
            if entry.type == pafs.FileType.File and entry.base_name.endswith(FILE_SUFFIX):
                files.append(entry.path)
            elif entry.type == pafs.FileType.Directory and entry.base_name.startswith(FILE_PREFIX):
                try:
                    files.extend(_run_parts(fs, entry.path, published=folder == path))
                except ResultsError as error:
                    if on_foreign != "skip":
                        raise
                    warnings.warn(f"skipping {entry.path}: {error}", stacklevel=2)
    return sorted(files)


def check_part(path: str, meta: dict[bytes, bytes] | None) -> None:
    """Refuse a part file that is not what its place says: another run's, or another shard's.

    A part in a run folder `...Z-<run id>/<shard>.parquet` carries its run id and shard in its
    metadata; a part copied in from another run, or under another shard's name, does not match.
    """
    meta = meta or {}
    folder, name = posixpath.split(path.replace("\\", "/"))
    folder_id = folder_run_id(posixpath.basename(folder))
    if folder_id is None or META_RUN_ID not in meta:
        return  # a version 1 single file, or a file read on its own
    run_id = meta[META_RUN_ID].decode(errors="replace")
    shard = meta.get(META_SHARD, b"").decode(errors="replace")
    if safe_id(run_id) != folder_id:
        raise ResultsError(
            f"results: {path!r} belongs to run {run_id!r}, not to the run of its folder; a part "
            "was copied in from another run: remove it and restore the run's own"
        )
    if shard + FILE_SUFFIX != name:
        raise ResultsError(
            f"results: {path!r} holds shard {shard!r}, not the shard its name says; a part was "
            "copied under another name: remove it"
        )


class Source:
    """Results rows to read: files (each checked once, before its rows), or one in-memory table.

    `strict` (as `read_results`): each file must be an iris-sweep file of a readable schema
    version; otherwise (as the report) it must hold `MODEL_COLUMNS` and the loss curves, and
    strings come as dictionaries. Either way a part must be of the run and shard its folder and
    name say.
    """

    def __init__(
        self,
        paths: Sequence[str],
        filesystem: pafs.FileSystem | None = None,
        table: pa.Table | None = None,
        strict: bool = False,
    ) -> None:
        self.paths, self.table, self.strict = list(paths), table, strict
        if table is not None:
            self.dataset = ds.dataset(table.combine_chunks())
        else:
            schema, format = (SCHEMA, "parquet") if strict else (_STREAMED, _STREAMED_FORMAT)
            self.dataset = ds.dataset(self.paths, schema, format, filesystem)
        self._fragments = list(self.dataset.get_fragments())
        self._checked: set[int] = set()

    @classmethod
    def of_frame(cls, frame: pd.DataFrame) -> Source:
        """A source over a results DataFrame (as `read_results` returns)."""
        missing = [c for c in (*MODEL_COLUMNS, CURVE_COLUMN) if c not in frame.columns]
        if missing:
            raise ResultsError(f"results: the results frame has no column {', '.join(missing)}")
        fields = [
            _STREAMED.field(name)
            for name in (*MODEL_COLUMNS, *LATER_COLUMNS, CURVE_COLUMN, REFERENCE_CURVE_COLUMN)
        ]
        arrays = [
            _as_type(pa.array(frame[f.name], from_pandas=True), f.type)
            if f.name in frame
            else pa.nulls(len(frame), f.type)
            for f in fields
        ]
        return cls(["<DataFrame>"], table=pa.Table.from_arrays(arrays, schema=pa.schema(fields)))

    def __len__(self) -> int:
        return len(self.paths)

    def fragment(self, index: int) -> ds.Fragment:
        """The file `index` as a dataset fragment, its footer checked (see the class)."""
        fragment = self._fragments[index]
        if index in self._checked or not isinstance(fragment, ds.ParquetFileFragment):
            return fragment
        path = self.paths[index]
        try:
            schema = fragment.physical_schema
        except (pa.ArrowException, OSError) as error:
            raise ResultsError(
                f"results: cannot read {path!r}: not a readable Parquet file ({error})"
            ) from error
        if self.strict:
            problem = schema_problem(schema, version=None)
        else:
            missing = [c for c in (*MODEL_COLUMNS, CURVE_COLUMN) if c not in schema.names]
            problem = (
                missing and f"is not an iris-sweep results file (no column {', '.join(missing)})"
            )
        if problem:
            raise ResultsError(f"results: {path!r} {problem}")
        check_part(path, schema.metadata)
        self._checked.add(index)
        return fragment

    def values_per_row(self, index: int) -> float:
        """The mean loss-curve length of a file, from its footer: it sizes the batches."""
        fragment = self.fragment(index)
        if not isinstance(fragment, ds.ParquetFileFragment):
            rows = max(self.dataset.count_rows(), 1)
            return len(pc.list_flatten(self.dataset.to_table([CURVE_COLUMN])[0])) / rows
        meta, values = fragment.metadata, 0
        for group in range(meta.num_row_groups):
            for column in range(meta.num_columns):
                chunk = meta.row_group(group).column(column)
                if chunk.path_in_schema.split(".", 1)[0] == CURVE_COLUMN:
                    values += chunk.num_values
        return values / max(meta.num_rows, 1)

    def batches(
        self, index: int, columns: Sequence[str], rows: int, keep: ds.Expression | None = None
    ) -> Iterator[pa.RecordBatch]:
        """The `columns` of file `index` (null where it lacks them), `rows` at most at a time."""
        fragment = self.fragment(index)
        try:
            yield from fragment.to_batches(
                self.dataset.schema, list(columns), keep, rows, batch_readahead=1
            )
        except (pa.ArrowException, OSError) as error:
            raise ResultsError(f"results: cannot read {self.paths[index]!r}: {error}") from error


def _as_type(array: pa.Array, wanted: pa.DataType) -> pa.Array:
    if array.type == wanted:
        return array
    if wanted == _DICTIONARY:
        return array.cast(pa.string()).cast(_DICTIONARY)
    # a frame's timestamps are nanoseconds: microseconds lose nothing a run start has
    return array.cast(wanted, safe=not pa.types.is_timestamp(wanted))


def read_results(
    location: str,
    flow_run_ids: Iterable[str] | None = None,
    on_foreign: str = "error",
    include_unfinished: bool = False,
) -> pd.DataFrame:
    """Load every published run's results under `location` as one pandas DataFrame, checked.

    `flow_run_ids` keeps only those runs. A file or run folder that is not iris-sweep's (or not
    whole) raises `ResultsError` naming it, or, with `on_foreign="skip"`, is skipped with a
    warning. `include_unfinished` adds the shards of runs that have not finished (failed,
    interrupted or still running; see the README), with `run_status` "partial". Files of an
    older schema version read with the columns added since null.
    """
    if on_foreign not in ("error", "skip"):
        raise ValueError(f"on_foreign: {on_foreign!r} is not allowed; valid are 'error', 'skip'")
    if isinstance(flow_run_ids, str):
        raise ValueError(
            f"flow_run_ids: expected a list of run ids, got the string {flow_run_ids!r}; "
            "write [id] for one run"
        )
    files = list_result_files(location, include_unfinished, on_foreign)
    fs, root = resolve(location, "location")
    source = Source(files, fs, strict=True)
    keep = None
    if flow_run_ids is not None:
        wanted = pa.array(sorted({str(run) for run in flow_run_ids}), pa.string())
        keep = ds.field("flow_run_id").isin(wanted)
    staging = f"{root.rstrip('/')}/{STAGING}/"
    tables = []
    for index, path in enumerate(files):
        try:
            table = pa.Table.from_batches(
                source.batches(index, SCHEMA.names, 1 << 20, keep), SCHEMA
            )
        except ResultsError as error:
            if on_foreign == "error":
                raise
            warnings.warn(f"skipping {path}: {error}", stacklevel=2)
            continue
        if path.startswith(staging):
            status = SCHEMA.get_field_index("run_status")
            partial = pa.array([STATUS_PARTIAL] * len(table))
            table = table.set_column(status, SCHEMA.field(status), partial)
        tables.append(table)
    return (pa.concat_tables(tables) if tables else SCHEMA.empty_table()).to_pandas()


def file_metadata(path: str) -> dict[str, Any]:
    """Return a run's metadata: schema version, parameters, versions, status, failed shards.

    `path` is a run folder (its `_run.json`), a part file or a version 1 single file.
    """
    fs, inner = resolve(path, "path")
    if fs.get_file_info(inner).type == pafs.FileType.Directory:
        manifest = read_manifest(fs, inner)
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


def read_models(source: Source, run_ids: Sequence[str] | None) -> pd.DataFrame:
    """Pass 1: every model's scalars, without its curve; `_file` and `_row` say where it is."""
    wanted = None if run_ids is None else pa.array([str(r) for r in run_ids], pa.string())
    columns = [*MODEL_COLUMNS, *LATER_COLUMNS]
    tables = []
    for index in range(len(source)):
        offset = 0
        for batch in source.batches(index, columns, SCALAR_BATCH_ROWS):
            rows = np.arange(offset, offset + batch.num_rows, dtype=np.int64)
            offset += batch.num_rows
            if wanted is not None:
                keep = pc.is_in(batch.column("flow_run_id"), value_set=wanted).fill_null(False)
                batch = batch.filter(keep)
                rows = rows[keep.to_numpy(zero_copy_only=False)]
            if batch.num_rows == 0:
                continue
            arrays = dict(zip(columns, batch.columns, strict=True))
            for name in AS_FLOAT:
                arrays[name] = arrays[name].cast(pa.float64())
            arrays["_file"] = pa.array(np.full(batch.num_rows, index, dtype=np.int32))
            arrays["_row"] = pa.array(rows)
            tables.append(pa.table(arrays))
    if not tables:
        return pd.DataFrame()
    table = pa.concat_tables(tables).unify_dictionaries()
    del tables
    frame = table.to_pandas(self_destruct=True, split_blocks=True)
    del table
    # conversion buffers stay in Arrow's allocator, which numpy and pandas never reuse
    pa.default_memory_pool().release_unused()
    for name in frame.columns[frame.dtypes == "category"]:  # groups and sorts go by name
        values = frame[name].cat.remove_unused_categories()
        frame[name] = values.cat.reorder_categories(sorted(values.cat.categories))
    return frame


def take(frame: pd.DataFrame, order: np.ndarray) -> pd.DataFrame:
    """Return the rows `order` of `frame` as a new frame, emptying `frame` column by column.

    Whoever still holds `frame` sees it emptied: that is the point, a million rows are never
    held twice, only one column at a time.
    """
    taken = pd.DataFrame(index=pd.RangeIndex(len(order)))
    for name in list(frame.columns):
        column = frame.pop(name)
        taken[name] = column.array.take(order)
        del column
    pa.default_memory_pool().release_unused()
    return taken


def element_at(lists: pa.Array, used: np.ndarray, where: str) -> np.ndarray:
    """Return `lists[i][used[i] - 1]` per row as float64, one `list_element` per distinct epoch."""
    lengths = pc.list_value_length(lists).fill_null(0).to_numpy(zero_copy_only=False)
    bad = (used < 1) | (used > lengths)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ResultsError(
            f"results: {where}: a loss_curve of {lengths[i]} epochs has no epoch {used[i]} "
            "(its `epochs` column says it trained that long)"
        )
    out = np.empty(len(used), dtype=np.float64)
    for value in np.unique(used):  # rows of one run share their epochs: one value per batch
        chosen = used == value
        part = lists if chosen.all() else lists.filter(pa.array(chosen))
        out[chosen] = pc.list_element(part, int(value) - 1).to_numpy(zero_copy_only=False)
    return out


def each_curve(
    source: Source,
    models: pd.DataFrame,
    wanted: np.ndarray,
    visit: Callable[[int, np.ndarray, pa.Array], None],
    workers: int = 1,
    column: str = CURVE_COLUMN,
) -> None:
    """Read the list `column` of the models `wanted` (positions in `models`), batch by batch.

    Calls `visit(file, positions, curves)` with each batch's share of them, file by file; with
    `workers` > 1, files are read in that many threads at once and `visit` must allow it.
    """
    files = models["_file"].to_numpy()[wanted]
    rows = models["_row"].to_numpy()[wanted]
    order = np.lexsort((rows, files))
    wanted, files, rows = wanted[order], files[order], rows[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(files)) + 1, [len(files)]])

    def read(start: int, end: int) -> None:
        index = int(files[start])
        mine, positions = rows[start:end], wanted[start:end]
        batch_rows = max(1, int(BATCH_VALUES // max(source.values_per_row(index), 1.0)))
        offset = 0
        for batch in source.batches(index, [column], batch_rows):
            size = batch.num_rows
            low, high = np.searchsorted(mine, [offset, offset + size])
            if high > low:
                curves = batch.column(0)
                if high - low < size:
                    curves = curves.take(pa.array(mine[low:high] - offset))
                visit(index, positions[low:high], curves)
            offset += size
            if offset > mine[-1]:
                break  # the rest of the file holds none of them

    spans = list(zip(starts[:-1].tolist(), starts[1:].tolist(), strict=True))
    if workers <= 1 or len(spans) <= 1:
        for start, end in spans:
            read(start, end)
        return
    # Decoding nested Parquet lists costs more than the arithmetic on them and releases the
    # GIL: files read side by side use every core.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done in [pool.submit(read, start, end) for start, end in spans]:
            done.result()

"""The one reader: results files checked, then read by `pyarrow.dataset` in the schema."""

import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Self

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from . import layout
from .listing import ResultsError, check_part, list_result_files, unreadable
from .locations import resolve
from .schema import AS_FLOAT, LATER_COLUMNS, MODEL_COLUMNS, SCHEMA, schema_problem

CURVE_COLUMN = "loss_curve"
REFERENCE_CURVE_COLUMN = "reference_loss_curve"
# Strings read as dictionaries: a million rows hold a handful of strings and int32 codes.
_DICTIONARY = pa.dictionary(pa.int32(), pa.string())
_STRINGS = [f.name for f in SCHEMA if f.type == pa.string()]
_STREAMED = pa.schema([f.with_type(_DICTIONARY) if f.name in _STRINGS else f for f in SCHEMA])
_DICTIONARIES = ds.ParquetFileFormat(read_options={"dictionary_columns": _STRINGS})
_NEEDED = (*MODEL_COLUMNS, CURVE_COLUMN)  # what the report needs of every file
BATCH_VALUES = 1 << 21  # loss values per batch read: 8 MB of float32
SCALAR_BATCH_ROWS = 1 << 16
READ_THREADS = max(1, min(4, os.cpu_count() or 1))  # files decoded at once; each holds a batch


class Source:
    """Rows to read: results files, each checked before its rows are read, or one table.

    `strict`: a file must be of a readable schema version; else it must hold `MODEL_COLUMNS` and
    the curves, and strings are dictionaries.
    """

    def __init__(
        self,
        paths: Sequence[str],
        filesystem: pafs.FileSystem | None = None,
        table: pa.Table | None = None,
        strict: bool = False,
    ) -> None:
        self.paths, self.strict = list(paths), strict
        if table is not None:
            self.dataset = ds.dataset(table.combine_chunks())
        else:  # given the schema, the dataset fills the columns older files lack with nulls
            schema, format = (SCHEMA, "parquet") if strict else (_STREAMED, _DICTIONARIES)
            self.dataset = ds.dataset(self.paths, schema, format, filesystem)
        self._fragments = list(self.dataset.get_fragments())
        self._checked: set[int] = set()

    @classmethod
    def of_frame(cls, frame: pd.DataFrame) -> Self:
        """A source over a results DataFrame (as `read_results` returns)."""
        if missing := [c for c in _NEEDED if c not in frame.columns]:
            raise ResultsError(f"results: the results frame has no column {', '.join(missing)}")
        wanted = (*MODEL_COLUMNS, *LATER_COLUMNS, CURVE_COLUMN, REFERENCE_CURVE_COLUMN)
        schema = pa.schema([_STREAMED.field(name) for name in wanted])
        arrays = [_column(frame, field) for field in schema]
        return cls(["<DataFrame>"], table=pa.Table.from_arrays(arrays, schema=schema))

    def __len__(self) -> int:
        return len(self.paths)

    def fragment(self, index: int) -> ds.Fragment:
        """File `index` as a dataset fragment, its footer checked (see the class)."""
        fragment, path = self._fragments[index], self.paths[index]
        if index in self._checked or not isinstance(fragment, ds.ParquetFileFragment):
            return fragment
        try:
            schema = fragment.physical_schema
        except (pa.ArrowException, OSError) as error:
            raise unreadable(path, error) from error
        missing = ", ".join(c for c in _NEEDED if c not in schema.names)
        problem = schema_problem(schema, version=None) if self.strict else None
        if missing and not self.strict:
            problem = f"is not an iris-sweep results file (no column {missing})"
        if problem:
            raise ResultsError(f"results: {path!r} {problem}")
        check_part(path, schema.metadata)
        self._checked.add(index)
        return fragment

    def batches(
        self, index: int, columns: Sequence[str], rows: int, keep: ds.Expression | None = None
    ) -> Iterator[pa.RecordBatch]:
        """The `columns` of file `index` (null where it lacks them), `rows` at most at a time."""
        fragment = self.fragment(index)
        try:
            yield from fragment.to_batches(self.dataset.schema, list(columns), keep, rows)
        except (pa.ArrowException, OSError) as error:
            raise ResultsError(f"results: cannot read {self.paths[index]!r}: {error}") from error

    def curves(self, index: int, column: str) -> Iterator[pa.Array]:
        """The list `column` of file `index`, decoded in batches of about `BATCH_VALUES` values."""
        fragment = self.fragment(index)
        if parquet := isinstance(fragment, ds.ParquetFileFragment):
            meta, count = fragment.metadata, fragment.metadata.num_rows
            chunks = [meta.row_group(g).column(c) for g in range(meta.num_row_groups)
                      for c in range(meta.num_columns)]  # fmt: skip
            curve = f"{CURVE_COLUMN}."
            values = sum(c.num_values for c in chunks if c.path_in_schema.startswith(curve))
        else:
            count, lists = self.dataset.count_rows(), self.dataset.to_table([CURVE_COLUMN])[0]
            values = pc.sum(pc.list_value_length(lists)).as_py() or 0
        rows = max(1, int(BATCH_VALUES * count // max(values, 1)))
        try:
            if parquet and column in fragment.physical_schema.names:
                # not by the dataset, which decodes a whole row group (a version 1 file) at once
                file = pq.ParquetFile(fragment.path, filesystem=fragment.filesystem)
                yield from (batch.column(0) for batch in file.iter_batches(rows, columns=[column]))
            else:  # a frame, or an older file without the column: nulls from the dataset
                yield from (batch.column(0) for batch in self.batches(index, [column], rows))
        except (pa.ArrowException, OSError) as error:
            raise ResultsError(f"results: cannot read {self.paths[index]!r}: {error}") from error


def _column(frame: pd.DataFrame, field: pa.Field) -> pa.Array:
    if field.name not in frame:
        return pa.nulls(len(frame), field.type)
    array, wanted = pa.array(frame[field.name], from_pandas=True), field.type
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

    `flow_run_ids` keeps those runs; `include_unfinished` adds unfinished runs' rows as "partial".
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
    source, keep = Source(files, fs, strict=True), None
    if flow_run_ids is not None:
        wanted = pa.array(sorted({str(run) for run in flow_run_ids}), pa.string())
        keep = ds.field("flow_run_id").isin(wanted)
    status = SCHEMA.get_field_index("run_status")
    tables = []
    for index, path in enumerate(files):
        try:
            batches = source.batches(index, SCHEMA.names, 1 << 20, keep)
            table = pa.Table.from_batches(batches, source.dataset.schema)
        except ResultsError as error:
            if on_foreign == "error":
                raise
            warnings.warn(f"skipping {path}: {error}", stacklevel=2)
            continue
        if path.startswith(f"{root.rstrip('/')}/{layout.STAGING}/"):
            partial = pa.array([layout.STATUS_PARTIAL] * len(table))
            table = table.set_column(status, SCHEMA.field(status), partial)
        tables.append(table)
    return (pa.concat_tables(tables) if tables else SCHEMA.empty_table()).to_pandas()


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
                batch, rows = batch.filter(keep), rows[keep.to_numpy(zero_copy_only=False)]
            if batch.num_rows == 0:
                continue
            arrays = dict(zip(columns, batch.columns, strict=True))
            arrays.update({name: arrays[name].cast(pa.float64()) for name in AS_FLOAT})
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
    """Return the rows `order` of `frame`, emptying `frame` column by column (never all twice)."""
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
    """Pass 2: `visit(file, positions, curves)` each batch of `column` of models at `wanted`."""
    files = models["_file"].to_numpy()[wanted]
    rows = models["_row"].to_numpy()[wanted]
    order = np.lexsort((rows, files))
    wanted, files, rows = wanted[order], files[order], rows[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(files)) + 1, [len(files)]])

    def read(start: int, end: int) -> None:
        index = int(files[start])
        mine, positions = rows[start:end], wanted[start:end]
        offset = 0
        for curves in source.curves(index, column):
            size = len(curves)
            low, high = np.searchsorted(mine, [offset, offset + size])
            if high > low:
                if high - low < size:
                    curves = curves.take(pa.array(mine[low:high] - offset))
                visit(index, positions[low:high], curves)
            offset += size
            if offset > mine[-1]:
                break  # the rest of the file holds none of them

    firsts, ends = starts[:-1].tolist(), starts[1:].tolist()
    # decoding Parquet lists costs most and frees the GIL: files read side by side use every core
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(ends)))) as pool:
        list(pool.map(read, firsts, ends))

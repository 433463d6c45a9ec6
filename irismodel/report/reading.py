"""Streaming a run's Parquet part files: per-model scalars column by column, curves by batches."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from irismodel.results import ResultsError, check_part

from .settings import ReportError

# Loss values per batch read: 8 MB of float32, with float64 temporaries a few times that.
BATCH_VALUES = 1 << 21
SCALAR_BATCH_ROWS = 1 << 16
READ_THREADS = max(1, min(4, os.cpu_count() or 1))  # files decoded at once; each holds a batch
CURVE_COLUMN = "loss_curve"
REFERENCE_CURVE_COLUMN = "reference_loss_curve"
_DICTIONARY = pa.dictionary(pa.int32(), pa.string())
# The per-model columns read from every file, as the types they are kept in; strings stay
# dictionary-encoded (pandas categoricals), so a million rows hold a handful of strings.
COLUMN_TYPES: dict[str, pa.DataType] = {
    "flow_run_id": _DICTIONARY,
    "run_started_at": pa.timestamp("us", tz="UTC"),
    "run_status": _DICTIONARY,
    "hidden_dim": pa.int32(),
    "optimizer": _DICTIONARY,
    "seed": pa.int64(),
    "learning_rate": pa.float64(),
    "epochs": pa.int32(),
    "standardize": pa.bool_(),
    "test_size": pa.float64(),
    "split_seed": pa.int64(),
    "positive_class": _DICTIONARY,
    "data_fingerprint": _DICTIONARY,
    "n_train": pa.int32(),
    "n_test": pa.int32(),
    "diverged": pa.bool_(),
    "final_train_loss": pa.float64(),
    **{
        f"{part}_{metric}": pa.float64()
        for part in ("train", "test")
        for metric in ("accuracy", "precision", "recall")
    },
}
# Newer files only; older ones read as nulls. Counts and flags as float64 so a null is a NaN.
OPTIONAL_TYPES: dict[str, pa.DataType] = {
    "engine": _DICTIONARY,
    "outcome": _DICTIONARY,
    "n_train_positive": pa.float64(),
    "n_test_positive": pa.float64(),
    "baseline_loss": pa.float64(),
    "reference_checked": pa.float64(),
    "reference_epochs": pa.float64(),
    "reference_max_abs_diff": pa.float64(),
    "reference_agrees": pa.float64(),
}
STRING_COLUMNS = tuple(
    name for name, kind in {**COLUMN_TYPES, **OPTIONAL_TYPES}.items() if kind == _DICTIONARY
)


class Source:
    """The rows to report on: Parquet files read batch by batch, or one in-memory table."""

    def __init__(
        self,
        paths: Sequence[str],
        filesystem: pafs.FileSystem | None = None,
        table: pa.Table | None = None,
    ) -> None:
        self.paths = list(paths)
        self.filesystem = filesystem
        self.table = table
        self._infos: dict[int, tuple[list[str], float]] = {}

    @classmethod
    def of_frame(cls, frame: pd.DataFrame) -> Source:
        """A source over a results DataFrame (as `read_results` returns)."""
        missing = [c for c in (*COLUMN_TYPES, CURVE_COLUMN) if c not in frame.columns]
        if missing:
            raise ReportError(f"report: the results frame has no column {', '.join(missing)}")
        wanted = (*COLUMN_TYPES, *OPTIONAL_TYPES, CURVE_COLUMN, REFERENCE_CURVE_COLUMN)
        columns = [c for c in wanted if c in frame]
        table = pa.Table.from_pandas(frame[columns], preserve_index=False)
        return cls(["<DataFrame>"], table=table)

    def __len__(self) -> int:
        return len(self.paths)

    def _info(self, index: int) -> tuple[list[str], float]:
        """A file's column names and mean loss-curve length, from its footer, read once."""
        if index not in self._infos:
            path = self.paths[index]
            try:
                meta = pq.read_metadata(path, filesystem=self.filesystem)
            except (pa.ArrowException, OSError) as error:
                raise ResultsError(
                    f"results: cannot read {path!r}: not a readable Parquet file ({error})"
                ) from error
            check_part(path, meta.metadata)
            values = 0
            for group in range(meta.num_row_groups):
                row_group = meta.row_group(group)
                for column in range(row_group.num_columns):
                    chunk = row_group.column(column)
                    if chunk.path_in_schema.split(".", 1)[0] == CURVE_COLUMN:
                        values += chunk.num_values
            names = meta.schema.to_arrow_schema().names
            self._infos[index] = (names, values / max(meta.num_rows, 1))
        return self._infos[index]

    def column_names(self, index: int) -> list[str]:
        if self.table is not None:
            return self.table.column_names
        return self._info(index)[0]

    def values_per_row(self, index: int) -> float:
        """The mean loss-curve length of a file: it sizes the batches."""
        if self.table is not None:
            rows = max(self.table.num_rows, 1)
            return len(pc.list_flatten(self.table.column(CURVE_COLUMN))) / rows
        return self._info(index)[1]

    def batches(self, index: int, columns: Sequence[str], rows: int) -> Iterator[pa.RecordBatch]:
        if self.table is not None:
            yield from self.table.select(list(columns)).to_batches(max_chunksize=rows)
            return
        # strings come as dictionaries: a million run ids are a few strings and int32 codes
        strings = [c for c in columns if c in STRING_COLUMNS]
        try:
            file = pq.ParquetFile(
                self.paths[index], filesystem=self.filesystem, read_dictionary=strings
            )
            yield from file.iter_batches(batch_size=rows, columns=list(columns))
        except (pa.ArrowException, OSError) as error:
            raise ResultsError(f"results: cannot read {self.paths[index]!r}: {error}") from error


def _as_type(array: pa.Array, wanted: pa.DataType) -> pa.Array:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.type == wanted:
        return array
    if wanted == _DICTIONARY:
        return array.cast(pa.string()).cast(_DICTIONARY)
    # a frame's timestamps are nanoseconds: microseconds lose nothing a run start has
    return array.cast(wanted, safe=not pa.types.is_timestamp(wanted))


def read_models(source: Source, run_ids: Sequence[str] | None) -> pd.DataFrame:
    """Pass 1: every model's scalars, without its curve; `_file` and `_row` say where it is."""
    wanted = None if run_ids is None else pa.array([str(r) for r in run_ids], pa.string())
    types = {**COLUMN_TYPES, **OPTIONAL_TYPES}
    tables = []
    for index in range(len(source)):
        names = set(source.column_names(index))
        missing = [c for c in (*COLUMN_TYPES, CURVE_COLUMN) if c not in names]
        if missing:
            raise ResultsError(
                f"results: {source.paths[index]!r} is not an iris-sweep results file "
                f"(no column {', '.join(missing)})"
            )
        columns = [c for c in types if c in names]
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
            arrays = {
                name: (
                    _as_type(batch.column(name), kind)
                    if name in names
                    else pa.nulls(batch.num_rows, kind)
                )
                for name, kind in types.items()
            }
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
    for name in STRING_COLUMNS:  # sorted categories: groups and sorts go by name, as strings do
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
        raise ReportError(
            f"report: {where}: a loss_curve of {lengths[i]} epochs has no epoch {used[i]} "
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

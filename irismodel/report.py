"""The report: summary statistics, the notebook's two questions answered, plots, markdown, text.

Conventions (the README's "Report" section says the same):

- `loss_curve[e - 1]` is the loss of epoch `e` (1-based), computed by that epoch's forward pass
  before its update, as the notebook printed "Epoch [100/1000]". A run with fewer epochs than
  the epoch asked for is read at its last epoch, and the report says so.
- The majority-class accuracy is `max(p, 1 - p)`, `p` the share of positive rows among the
  evaluated rows: what always predicting the larger class scores. `p` comes from the
  `n_train_positive` / `n_test_positive` columns where the results have them, and is otherwise
  inferred from the models' accuracy, precision and recall. A seed is *stuck* when its training
  accuracy is within `STUCK_TOLERANCE` (0.02) of the training rows' majority-class accuracy.
- Intervals are 95% t-intervals of the mean over seeds (`scipy.stats.t`); one seed gives none.
- Diverged seeds (a NaN or infinite loss or weight) are counted, never averaged.
- The loss-curve plot draws, per hidden_dim, the median loss over seeds (line) and the 10th to
  90th percentile of seeds (band) when every curve has at least `QUANTILE_BAND_SEEDS` (20)
  seeds, and the mean with its 95% CI otherwise; the title says which. Lines go through up to
  ~200 epochs (log-spaced, evenly spaced, the epoch of interest and the last). Percentiles
  come from fixed log-spaced histograms (8 bins per octave, each 9% wide, interpolated inside
  the bin), so they are close, not exact; means and intervals are exact.
- The accuracy plot draws every seed as a point up to `BOX_THRESHOLD` seeds per hidden_dim and
  optimizer, and a box (median, quartiles, whiskers at the 10th and 90th percentile) above.

Scale: a results location is read column by column and batch by batch, files in parallel.
Memory holds a few scalars per model (about 150 bytes) and, per setting x hidden_dim x
optimizer, sums and histograms at the drawn epochs; never a loss curve per model, so a million
models of 1,000 epochs fit in 1 GB.
"""

from __future__ import annotations

import argparse
import base64
import functools
import html
import io
import math
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from scipy import stats

from irismodel import storage
from irismodel.results import FILE_SUFFIX, ResultsError, list_result_files

EPOCH_OF_INTEREST = 100  # the notebook's
STUCK_TOLERANCE = 0.02
CONFIDENCE = 0.95
SIGNIFICANCE = 0.05
# Parameters that change what a loss or an accuracy means: rows that differ in one of them are
# never pooled. The split (and so the evaluated rows) depends on the last four.
SETTING_COLUMNS = (
    "learning_rate",
    "epochs",
    "standardize",
    "test_size",
    "split_seed",
    "positive_class",
    "data_fingerprint",
)
SPLIT_COLUMNS = ("data_fingerprint", "positive_class", "test_size", "split_seed")
# pandas' and pyarrow's folder readers skip names starting with "_" or "."; report files start
# with "_" so that `pd.read_parquet(results_folder)` never trips over a PNG beside the Parquet.
REPORT_PREFIX = "_iris-sweep-report"
PNG_DPI = 100
# Display order of the optimizers: the names of irismodel.optimizers.OPTIMIZERS, repeated here
# because that registry imports torch, which a report has no use for (a test keeps them equal).
OPTIMIZER_ORDER = ("sgd", "manual", "manual-no-zero-grad", "momentum", "adam")
# Above this many seeds per hidden_dim and optimizer, points would be an unreadable smear.
BOX_THRESHOLD = 200
BAND = (0.1, 0.9)  # the loss-curve band: this share of seeds lies between its edges
# From this many seeds in every curve the plot draws the median and the percentile band; with
# fewer, percentiles of a handful of seeds say little and the mean with its 95% CI is drawn.
QUANTILE_BAND_SEEDS = 20
GRID_POINTS = 100  # log-spaced epochs drawn per curve, and as many evenly spaced
# Loss values per batch read: 8 MB of float32, with float64 temporaries a few times that.
BATCH_VALUES = 1 << 21
# Both curves of every manual/sgd pair that differ are held while comparing: at most this many
# values a side at a time (2 x 32 MB); more pairs take more passes, never more memory.
DIFFERENCE_VALUES = 1 << 22
SCALAR_BATCH_ROWS = 1 << 16
READ_THREADS = max(1, min(4, os.cpu_count() or 1))  # files decoded at once; each holds a batch

CURVE_COLUMN = "loss_curve"
_DICTIONARY = pa.dictionary(pa.int32(), pa.string())
# The per-model columns read from every file, as the types they are kept in; strings stay
# dictionary-encoded (pandas categoricals), so a million rows hold a handful of strings.
_COLUMN_TYPES: dict[str, pa.DataType] = {
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
# Newer files only; older ones read as nulls. Counts as float64 so that a null is a NaN.
_OPTIONAL_TYPES: dict[str, pa.DataType] = {
    "outcome": _DICTIONARY,
    "n_train_positive": pa.float64(),
    "n_test_positive": pa.float64(),
}
_PAIRED = ("sgd", "manual")  # their curves are compared; only theirs are fingerprinted
# Histogram bins: the top bits of a positive float32 (its exponent and 3 mantissa bits) are a
# monotonic, log-spaced bin index, 8 bins per octave, read with a shift instead of a logarithm.
_BIN_SHIFT = 20
_BIN_FIRST = (127 - 20) << 3  # bits >> shift of 2**-20, the lowest edge
_BIN_COUNT = 30 * 8 + 2  # [2**-20, 2**10) and an underflow (incl. 0) and overflow (incl. NaN) bin
_BIN_EDGES = np.concatenate(
    [
        [0.0],
        ((np.arange(_BIN_COUNT - 1, dtype=np.int64) + _BIN_FIRST) << _BIN_SHIFT)
        .astype(np.int32)
        .view(np.float32)
        .astype(np.float64),
        [2.0**10],
    ]
)


class ReportError(ValueError):
    """The results cannot be reported on (no rows, or an epoch that does not exist)."""


# --------------------------------------------------------------------------- statistics


def mean_interval(values: Iterable[float]) -> tuple[int, float, float, float, float]:
    """Return (n, mean, standard deviation, CI low, CI high) of the finite values.

    The interval is the 95% t-interval of the mean; with fewer than two values the standard
    deviation and the interval are NaN (no interval from one seed).
    """
    if not isinstance(values, np.ndarray | pd.Series):
        values = list(values)
    array = np.asarray(values, dtype=np.float64)
    array = array[np.isfinite(array)]
    n = int(array.size)
    if n == 0:
        return 0, math.nan, math.nan, math.nan, math.nan
    mean = float(array.mean())
    if n == 1:
        return 1, mean, math.nan, math.nan, math.nan
    std = float(array.std(ddof=1))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * std / math.sqrt(n)
    return n, mean, std, mean - half, mean + half


def _check_epoch(epoch: Any) -> int:
    if isinstance(epoch, bool) or not isinstance(epoch, int | np.integer) or epoch < 1:
        raise ReportError(f"epoch: {epoch!r} is not allowed; it must be a positive integer")
    return int(epoch)


def epoch_used(frame: pd.DataFrame, epoch: int = EPOCH_OF_INTEREST) -> pd.Series:
    """Return, per row, the epoch read: `epoch`, or the row's last epoch if it trained fewer."""
    epoch = _check_epoch(epoch)
    return frame["epochs"].clip(upper=epoch).astype(int)


def _element_at(lists: pa.Array, used: np.ndarray, where: str) -> np.ndarray:
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


def loss_at_epoch(frame: pd.DataFrame, epoch: int = EPOCH_OF_INTEREST) -> pd.Series:
    """Return, per row, the loss of epoch `epoch` (1-based): `loss_curve[epoch - 1]`."""
    used = epoch_used(frame, epoch).to_numpy(np.int64)
    lists = pa.array(frame[CURVE_COLUMN], from_pandas=True)
    return pd.Series(_element_at(lists, used, "frame"), index=frame.index, dtype=np.float64)


def _positive_count(n: np.ndarray, accuracy: np.ndarray, precision: np.ndarray, recall: np.ndarray):
    """Infer the number of positive rows P from each model's metrics on the same N rows.

    With TP > 0 and an error: FP + FN = N (1 - accuracy), FP = TP/precision - TP and
    FN = TP/recall - TP give TP, then P = TP / recall. With TP = 0 (precision = recall = 0):
    P = N (1 - accuracy) - FP <= N (1 - accuracy), exact for a model predicting only negatives.
    """
    valid = np.isfinite(accuracy) & np.isfinite(precision) & np.isfinite(recall) & (n > 0)
    exact = valid & (precision > 0) & (recall > 0) & (accuracy < 1)
    if exact.any():
        e = exact
        true_pos = n[e] * (1 - accuracy[e]) / (1 / precision[e] + 1 / recall[e] - 2)
        return float(np.median(np.round(true_pos / recall[e])))
    none_predicted = valid & (precision == 0) & (recall == 0)
    if none_predicted.any():
        return float(np.min(np.round(n[none_predicted] * (1 - accuracy[none_predicted]))))
    return math.nan


def majority_accuracy(frame: pd.DataFrame, part: str = "train") -> pd.Series:
    """Return, per row, the majority-class accuracy `max(p, 1 - p)` of its `part` rows.

    The positive share is `n_<part>_positive / n_<part>` where the results have that column;
    otherwise (older files) it is inferred exactly from the accuracy, precision and recall of
    the models evaluated on the same rows (same data, class, test size and split seed). NaN
    when no model's metrics determine it (all perfect) or when the part has no rows (`test`
    with test_size 0).
    """
    if part not in ("train", "test"):
        raise ReportError(f"part: {part!r} is not allowed; valid are 'train', 'test'")
    out = np.full(len(frame), math.nan)
    if frame.empty:
        return pd.Series(out, index=frame.index, dtype=np.float64)
    n_all = frame[f"n_{part}"].to_numpy(np.float64)
    metrics = [
        frame[f"{part}_{m}"].to_numpy(np.float64) for m in ("accuracy", "precision", "recall")
    ]
    known = f"n_{part}_positive"
    given_all = frame[known].to_numpy(np.float64) if known in frame.columns else None
    split = frame.groupby(list(SPLIT_COLUMNS), sort=False, dropna=False, observed=True)
    for positions in split.indices.values():
        n = n_all[positions]
        positives = math.nan
        if given_all is not None:
            given = given_all[positions]
            given = given[np.isfinite(given)]
            if given.size:  # one split has one set of rows: any row's count is every row's
                positives = float(given[0])
        if not math.isfinite(positives):
            positives = _positive_count(n, *(m[positions] for m in metrics))
        with np.errstate(divide="ignore", invalid="ignore"):
            share = positives / n
        out[positions] = np.maximum(share, 1 - share)
    return pd.Series(out, index=frame.index, dtype=np.float64)


def varying_settings(frame: pd.DataFrame) -> list[str]:
    """Return the setting columns that take more than one value in `frame`."""
    return [c for c in SETTING_COLUMNS if frame[c].nunique(dropna=False) > 1]


def _settings(frame: pd.DataFrame) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """Split `frame` into groups of one setting each: [(setting values, rows)].

    One setting (the usual case) is `frame` itself, not a copy of a million rows.
    """
    columns = list(SETTING_COLUMNS)
    indices = frame.groupby(columns, sort=True, dropna=False, observed=True).indices
    groups = sorted(indices.items(), key=lambda item: item[0])
    if len(groups) == 1:
        return [(dict(zip(columns, groups[0][0], strict=True)), frame)]
    return [
        (dict(zip(columns, key, strict=True)), frame.iloc[positions]) for key, positions in groups
    ]


def _optimizer_order(names: Iterable[str]) -> list[str]:
    order = list(OPTIMIZER_ORDER)
    return sorted(set(names), key=lambda n: (order.index(n) if n in order else len(order), n))


def _optimizers_of(frame: pd.DataFrame) -> list[str]:
    return _optimizer_order(str(name) for name in frame["optimizer"].unique())


# --------------------------------------------------------------------------- reading


class _Source:
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
    def of_frame(cls, frame: pd.DataFrame) -> _Source:
        missing = [c for c in (*_COLUMN_TYPES, CURVE_COLUMN) if c not in frame.columns]
        if missing:
            raise ReportError(f"report: the results frame has no column {', '.join(missing)}")
        columns = [c for c in (*_COLUMN_TYPES, *_OPTIONAL_TYPES, CURVE_COLUMN) if c in frame]
        return cls(
            ["<DataFrame>"], table=pa.Table.from_pandas(frame[columns], preserve_index=False)
        )

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
        strings = [c for c in columns if c in _STRING_COLUMNS]
        try:
            file = pq.ParquetFile(
                self.paths[index], filesystem=self.filesystem, read_dictionary=strings
            )
            yield from file.iter_batches(batch_size=rows, columns=list(columns))
        except (pa.ArrowException, OSError) as error:
            raise ResultsError(f"results: cannot read {self.paths[index]!r}: {error}") from error


_STRING_COLUMNS = tuple(
    name for name, kind in {**_COLUMN_TYPES, **_OPTIONAL_TYPES}.items() if kind == _DICTIONARY
)


def _as_type(array: pa.Array, wanted: pa.DataType) -> pa.Array:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.type == wanted:
        return array
    if wanted == _DICTIONARY:
        return array.cast(pa.string()).cast(_DICTIONARY)
    # a frame's timestamps are nanoseconds: microseconds lose nothing a run start has
    return array.cast(wanted, safe=not pa.types.is_timestamp(wanted))


def _read_models(source: _Source, run_ids: Sequence[str] | None) -> pd.DataFrame:
    """Pass 1: every model's scalars, without its curve; `_file` and `_row` say where it is."""
    wanted = None if run_ids is None else pa.array([str(r) for r in run_ids], pa.string())
    types = {**_COLUMN_TYPES, **_OPTIONAL_TYPES}
    tables = []
    for index in range(len(source)):
        names = set(source.column_names(index))
        missing = [c for c in (*_COLUMN_TYPES, CURVE_COLUMN) if c not in names]
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
    for name in _STRING_COLUMNS:  # sorted categories: groups and sorts go by name, as strings do
        values = frame[name].cat.remove_unused_categories()
        frame[name] = values.cat.reorder_categories(sorted(values.cat.categories))
    return frame


def _take(frame: pd.DataFrame, order: np.ndarray) -> pd.DataFrame:
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


def _prepare_models(frame: pd.DataFrame, epoch: int) -> pd.DataFrame:
    """Keep one row per setting x configuration x seed (the latest run); add derived columns."""
    if frame.empty:
        return frame
    # One permutation, applied once: sorting and de-duplicating a million rows frame by frame
    # would copy every column three times. Duplicates share a curve group and a seed.
    by = frame.groupby([*SETTING_COLUMNS, "hidden_dim", "optimizer"], sort=True, dropna=False,
                       observed=True)  # fmt: skip
    frame["_group"] = by.ngroup().to_numpy(np.int32)
    order = np.argsort(frame["run_started_at"].array.asi8, kind="stable")
    keys = pd.DataFrame({"group": frame["_group"].to_numpy()[order],
                         "seed": frame["seed"].to_numpy()[order]})  # fmt: skip
    order = order[~keys.duplicated(keep="last").to_numpy()]
    del keys
    by_name = (
        frame[c].to_numpy()[order] if c != "optimizer" else frame[c].cat.codes.to_numpy()[order]
        for c in ("seed", "optimizer", "hidden_dim")
    )
    order = order[np.lexsort(tuple(by_name))]  # stable: hidden_dim, optimizer, seed
    frame = _take(frame, order)
    frame["_epoch"] = np.minimum(frame["epochs"].to_numpy(np.int64), epoch).astype(np.int32)
    frame["_majority_train"] = majority_accuracy(frame, "train").to_numpy()
    frame["_majority_test"] = majority_accuracy(frame, "test").to_numpy()
    spent = [f"{p}_{m}" for p in ("train", "test") for m in ("precision", "recall")]
    return frame.drop(columns=[*spent, "n_train_positive", "n_test_positive"])


def _each_curve(
    source: _Source,
    models: pd.DataFrame,
    wanted: np.ndarray,
    visit: Callable[[int, np.ndarray, pa.Array], None],
    workers: int = 1,
) -> None:
    """Read the curves of the models `wanted` (positions in `models`), batch by batch.

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
        for batch in source.batches(index, [CURVE_COLUMN], batch_rows):
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


def _by_length(
    curves: pa.Array, lengths: np.ndarray
) -> Iterator[tuple[np.ndarray | None, np.ndarray]]:
    """Yield (rows or None for all, values as a rows x length matrix) per curve length."""
    distinct = np.unique(lengths)
    for length in distinct:
        if length == 0:
            continue
        chosen = None if len(distinct) == 1 else lengths == length
        part = curves if chosen is None else curves.filter(pa.array(chosen))
        values = pc.list_flatten(part).to_numpy(zero_copy_only=False)
        yield chosen, values.reshape(-1, int(length))


@functools.lru_cache(maxsize=8)
def _hash_coefficients(length: int) -> tuple[np.ndarray, np.ndarray]:
    # splitmix64 of the epoch: fixed per position, so every batch of every file hashes alike
    x = np.arange(2 * length, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = (x ^ (x >> np.uint64(31))) | np.uint64(1)
    return x[0::2].copy(), x[1::2].copy()


def _curve_hash(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two 64-bit fingerprints per row, equal for equal curves (NaN as NaN, -0.0 as 0.0).

    float32 curves are widened first (exactly), so files of either width fingerprint alike.
    """
    values = matrix.astype(np.float64) + 0.0  # -0.0 + 0.0 is 0.0: the one value of two patterns
    values[np.isnan(values)] = np.nan
    bits = values.view(np.uint64)
    first, second = _hash_coefficients(values.shape[1])
    # integer products and sums wrap modulo 2**64: a linear hash, fast as one matrix product
    return np.einsum("ij,j->i", bits, first), np.einsum("ij,j->i", bits, second)


@functools.lru_cache(maxsize=64)
def _grid(length: int, epoch: int) -> np.ndarray:
    """The epochs (0-based positions) a curve is drawn through: all of them up to 200."""
    if length <= 2 * GRID_POINTS:
        points = np.arange(length)
    else:
        epochs = np.concatenate(
            [
                np.geomspace(1, length, GRID_POINTS),
                np.linspace(1, length, GRID_POINTS),
                [min(epoch, length), length],
            ]
        )
        points = np.unique(np.rint(epochs).astype(np.int64)) - 1
    points.flags.writeable = False
    return points


class _Curves:
    """Per group (setting x hidden_dim x optimizer), sums of the curves that did not diverge.

    At each drawn (grid) epoch: the count, sum and sum of squares of the loss (float64) and a
    histogram of it. Memory grows with the groups and the drawn epochs, never with the models.
    """

    def __init__(self, lengths: Sequence[int], epoch: int) -> None:
        self.lengths = [int(n) for n in lengths]
        self.epoch = epoch
        size = len(self.lengths)
        self.count: list[np.ndarray | None] = [None] * size
        self.total: list[np.ndarray | None] = [None] * size
        self.squares: list[np.ndarray | None] = [None] * size
        self.histogram: list[np.ndarray | None] = [None] * size
        # models not flagged diverged whose curve still holds a NaN or infinity
        self.left_out = np.zeros(size, dtype=np.int64)
        self._locks = [threading.Lock() for _ in range(16)]  # files are read in threads

    def grid(self, group: int) -> np.ndarray:
        return _grid(self.lengths[group], self.epoch)

    def add(self, group: int, matrix: np.ndarray) -> None:
        """Add the curves `matrix` (models x epochs) of models of `group`; threads may call it."""
        grid = self.grid(group)
        inside = grid[: np.searchsorted(grid, matrix.shape[1])]
        if not len(inside) or not len(matrix):
            return
        values = matrix.take(inside, axis=1)  # the drawn epochs only: a fifth of 1,000
        wide = values.astype(np.float64)
        total = np.einsum("ij->j", wide)
        left_out = 0
        if not np.isfinite(total).all():  # rare: find the guilty rows only then
            finite = np.isfinite(wide).all(axis=1)
            left_out = int((~finite).sum())
            values, wide = values[finite], wide[finite]
            total = np.einsum("ij->j", wide)
        squares = np.einsum("ij,ij->j", wide, wide)
        bins = np.ascontiguousarray(values, dtype=np.float32).view(np.int32) >> _BIN_SHIFT
        bins -= _BIN_FIRST - 1  # negative floats stay negative: the underflow bin
        np.clip(bins, 0, _BIN_COUNT - 1, out=bins)
        bins += np.arange(len(inside), dtype=np.int32) * _BIN_COUNT
        counts = np.bincount(bins.ravel(), minlength=len(inside) * _BIN_COUNT)
        counts = counts.reshape(len(inside), _BIN_COUNT).astype(np.int32)
        width = len(inside)
        with self._locks[group % len(self._locks)]:
            self.left_out[group] += left_out
            if self.count[group] is None:
                self.count[group] = np.zeros(len(grid), dtype=np.int64)
                self.total[group] = np.zeros(len(grid), dtype=np.float64)
                self.squares[group] = np.zeros(len(grid), dtype=np.float64)
                self.histogram[group] = np.zeros((len(grid), _BIN_COUNT), dtype=np.int32)
            self.count[group][:width] += len(values)
            self.total[group][:width] += total
            self.squares[group][:width] += squares
            self.histogram[group][:width] += counts

    def band(self, group: int) -> dict[str, np.ndarray] | None:
        """Per grid epoch: epoch (1-based), n, mean, ci_low, ci_high, q10, median, q90."""
        if self.count[group] is None:
            return None
        present = self.count[group] > 0  # epochs past every curve's end have no models
        grid, histogram = self.grid(group)[present], self.histogram[group][present]
        n = self.count[group][present]
        total, squares = self.total[group][present], self.squares[group][present]
        mean = total / n
        with np.errstate(divide="ignore", invalid="ignore"):
            variance = np.maximum(squares - total * mean, 0.0) / (n - 1)
            half = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * np.sqrt(variance / n)
        half = np.where(n > 1, half, np.nan)
        low, median, high = _quantiles(histogram, (BAND[0], 0.5, BAND[1]))
        return {
            "epoch": grid + 1, "n": n, "mean": mean, "ci_low": mean - half,
            "ci_high": mean + half, "q10": low, "median": median, "q90": high,
        }  # fmt: skip


def _quantiles(histogram: np.ndarray, shares: Sequence[float]) -> list[np.ndarray]:
    """Quantiles per histogram row, linear inside the bin that holds them."""
    n = histogram.sum(axis=1)
    cumulative = np.cumsum(histogram, axis=1)
    rows = np.arange(len(histogram))
    out = []
    for share in shares:
        target = share * n
        bins = np.minimum((cumulative < target[:, None]).sum(axis=1), _BIN_COUNT - 1)
        inside = histogram[rows, bins]
        below = cumulative[rows, bins] - inside
        fraction = np.clip((target - below) / np.maximum(inside, 1), 0.0, 1.0)
        low, high = _BIN_EDGES[bins], _BIN_EDGES[bins + 1]
        out.append(np.where(n > 0, low + fraction * (high - low), np.nan))
    return out


@dataclass
class _Scan:
    """Everything a report is computed from: per-model scalars and per-group curve sums."""

    source: _Source
    models: pd.DataFrame
    epoch: int
    curves: _Curves | None


def _runs(keys: np.ndarray) -> Iterator[tuple[int, int, int]]:
    """Yield (start, end, key) of each run of equal keys."""
    cuts = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    starts = np.concatenate([[0], cuts]).astype(np.int64)
    ends = np.concatenate([cuts, [len(keys)]]).astype(np.int64)
    yield from zip(starts.tolist(), ends.tolist(), keys[starts].tolist(), strict=True)


def _read_curves(scan: _Scan, fingerprints: bool) -> None:
    """Pass 2: per model the loss at the epoch, curve length and fingerprint; group sums.

    Reads only the curves of the models kept, batch by batch, and keeps none of them.
    """
    models, curves, source = scan.models, scan.curves, scan.source
    size = len(models)
    loss = np.full(size, math.nan)
    lengths = np.zeros(size, dtype=np.int32)
    first, second = np.zeros(size, dtype=np.uint64), np.zeros(size, dtype=np.uint64)
    used = models["_epoch"].to_numpy(np.int64)
    diverged = models["diverged"].to_numpy(bool)
    group = models["_group"].to_numpy(np.int64)
    paired = models["optimizer"].isin(_PAIRED).to_numpy() & fingerprints

    def visit(index: int, positions: np.ndarray, lists: pa.Array) -> None:
        loss[positions] = _element_at(lists, used[positions], repr(source.paths[index]))
        mine = pc.list_value_length(lists).fill_null(0).to_numpy(zero_copy_only=False)
        lengths[positions] = mine
        if curves is None and not paired[positions].any():
            return
        for chosen, matrix in _by_length(lists, mine):
            rows = positions if chosen is None else positions[chosen]
            # key: the curve group (-1 when not summed) times 2, plus 1 when fingerprinted
            summed = np.full(len(rows), -1) if curves is None else group[rows]
            key = np.where(diverged[rows], -1, summed) * 2 + paired[rows]
            # A file's rows come one configuration after another: a batch is a few runs, each
            # a slice, never a copy. Rows that interleave configurations are sorted once.
            if np.count_nonzero(key[1:] != key[:-1]) > max(16, len(key) // 32):
                order = np.argsort(key, kind="stable")
                key, rows, matrix = key[order], rows[order], matrix[order]
            for start, end, which in _runs(key):
                if which & 1:
                    a, b = _curve_hash(matrix[start:end])
                    first[rows[start:end]], second[rows[start:end]] = a, b
                if which // 2 >= 0:
                    curves.add(which // 2, matrix[start:end])

    _each_curve(source, models, np.arange(size), visit, READ_THREADS)
    models["_loss"] = loss
    models["_length"] = lengths
    models["_hash1"], models["_hash2"] = first, second


def _scan(
    source: _Source,
    epoch: int,
    run_ids: Sequence[str] | None = None,
    curves: bool = True,
    fingerprints: bool = True,
) -> _Scan:
    """Read `source` in two passes: the models' scalars, then their curves batch by batch."""
    epoch = _check_epoch(epoch)
    # no name holds the frame as read: preparing it frees it while the copy is made
    models = _prepare_models(_read_models(source, run_ids), epoch)
    if models.empty:
        wanted = f" of run(s) {', '.join(str(r) for r in run_ids)}" if run_ids else ""
        hint = "" if run_ids else " (is the location right?)"
        raise ReportError(f"report: no results rows{wanted} to report on{hint}")
    aggregates = None
    if curves:
        lengths = models.groupby("_group", sort=True)["epochs"].max().to_numpy()
        aggregates = _Curves(lengths, epoch)
    scan = _Scan(source, models, epoch, aggregates)
    _read_curves(scan, fingerprints)
    return scan


def _scan_frame(
    frame: pd.DataFrame, epoch: int, curves: bool = True, fingerprints: bool = True
) -> _Scan:
    if frame is None or len(frame) == 0:
        raise ReportError("report: no results rows to report on (is the location or run right?)")
    _check_epoch(epoch)
    return _scan(_Source.of_frame(frame), epoch, curves=curves, fingerprints=fingerprints)


def _pair_difference(scan: _Scan, first: np.ndarray, second: np.ndarray) -> tuple[float, bool]:
    """Return the largest |difference| of paired curves, and whether NaN/inf entries agree.

    `first[i]` and `second[i]` are the positions in `scan.models` of one pair.

    Pairs with equal fingerprints are equal; only the others are read again, in passes that
    each hold at most `DIFFERENCE_VALUES` values of both sides.
    """
    models = scan.models
    lengths = models["_length"].to_numpy(np.int64)
    if (lengths[first] != lengths[second]).any():
        return math.inf, False
    hashes = models[["_hash1", "_hash2"]].to_numpy()
    differ = (hashes[first] != hashes[second]).any(axis=1)
    first, second = first[differ], second[differ]
    largest, same_nonfinite = 0.0, True
    if not len(first):
        return largest, same_nonfinite
    # in file order: a pass then reads a few neighbouring files, not a bit of every file
    files, rows = models["_file"].to_numpy(), models["_row"].to_numpy()
    order = np.lexsort((rows[first], files[first]))
    first, second = first[order], second[order]
    sizes = lengths[first]
    chunk = (np.cumsum(sizes) - sizes) // DIFFERENCE_VALUES
    for number in np.unique(chunk):
        chosen = chunk == number
        left, right = _paired_curves(scan, first[chosen], second[chosen], sizes[chosen])
        both = np.isfinite(left) & np.isfinite(right)
        same_nonfinite &= bool(np.array_equal(left[~both], right[~both], equal_nan=True))
        np.subtract(left, right, out=left)  # in place: the buffers are the largest arrays here
        np.abs(left, out=left)
        left[~both] = 0.0
        largest = max(largest, float(left.max()))
    return largest, same_nonfinite


def _paired_curves(
    scan: _Scan, first: np.ndarray, second: np.ndarray, sizes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Read the curves of `first` and of `second` into two flat float64 arrays, pair by pair."""
    lengths = scan.models["_length"].to_numpy(np.int64)
    total = int(sizes.sum())
    buffer = np.full(2 * total, math.nan)  # the first curves, then the second ones
    wanted = np.concatenate([first, second])
    starts = np.cumsum(sizes) - sizes
    base = np.concatenate([starts, starts + total])
    order = np.argsort(wanted)
    sorted_wanted = wanted[order]

    def visit(index: int, positions: np.ndarray, lists: pa.Array) -> None:
        counts = lengths[positions]
        into = base[order[np.searchsorted(sorted_wanted, positions)]]
        # value j of the batch goes to into[row] + (j - the row's first value)
        target = np.repeat(into - (np.cumsum(counts) - counts), counts)
        target += np.arange(len(target))
        buffer[target] = pc.list_flatten(lists).to_numpy(zero_copy_only=False)

    _each_curve(scan.source, scan.models, wanted, visit, READ_THREADS)
    return buffer[:total], buffer[total:]


# --------------------------------------------------------------------------- summary


def _summarize(models: pd.DataFrame) -> pd.DataFrame:
    keys = [*varying_settings(models), "hidden_dim", "optimizer"]
    records = []
    for values, rows in models.groupby(keys, sort=True, dropna=False, observed=True):
        record: dict[str, Any] = dict(zip(keys, values, strict=True))
        diverged = rows["diverged"].to_numpy(bool)
        ok = rows[~diverged]
        record["n_seeds"] = len(rows)
        record["n_diverged"] = int(diverged.sum())
        record["epoch"] = int(rows["_epoch"].iloc[0])
        for name, column in (
            ("loss_at_epoch", "_loss"),
            ("final_loss", "final_train_loss"),
            ("train_accuracy", "train_accuracy"),
            ("test_accuracy", "test_accuracy"),
        ):
            _, mean, std, low, high = mean_interval(ok[column].to_numpy(np.float64))
            record.update(
                {f"{name}_mean": mean, f"{name}_std": std, f"{name}_ci_low": low,
                 f"{name}_ci_high": high}
            )  # fmt: skip
        majority = float(rows["_majority_train"].iloc[0])
        record["train_majority_accuracy"] = majority
        stuck = np.abs(ok["train_accuracy"].to_numpy(np.float64) - majority) <= STUCK_TOLERANCE
        record["stuck_share"] = float(stuck.mean()) if len(ok) else math.nan
        records.append(record)
    summary = pd.DataFrame.from_records(records)
    order = _optimizer_order(summary["optimizer"])
    summary["_order"] = summary["optimizer"].map(order.index)
    summary = summary.sort_values([*keys[:-2], "hidden_dim", "_order"], kind="stable")
    return summary.drop(columns="_order").reset_index(drop=True)


def summarize(frame: pd.DataFrame, epoch: int = EPOCH_OF_INTEREST) -> pd.DataFrame:
    """Return one row per (hidden_dim, optimizer), and per setting where runs differ in one.

    Columns: `n_seeds` (all rows), `n_diverged`, `epoch` (the epoch read), then for
    `loss_at_epoch`, `final_loss`, `train_accuracy` and `test_accuracy` the `_mean`, `_std`,
    `_ci_low` and `_ci_high` over the seeds that did not diverge, `train_majority_accuracy`
    and `stuck_share` (of the seeds that did not diverge). Test columns are NaN when nothing
    was held out (test_size 0).
    """
    return _summarize(_scan_frame(frame, epoch, curves=False, fingerprints=False).models)


def _interval_text(mean: float, low: float, high: float, digits: int = 3) -> str:
    if not math.isfinite(mean):
        return "n/a"
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{mean:.{digits}f} (one seed, no CI)"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Return the summary as a readable table of strings: mean [95% CI] per quantity."""
    settings = [c for c in SETTING_COLUMNS if c in summary.columns]
    rows = []
    for record in summary.to_dict("records"):
        row: dict[str, Any] = {}
        for column in settings:
            value = record[column]
            if column == "data_fingerprint":
                value = _plain(value[:8])
            elif isinstance(value, float):
                value = f"{value:g}"
            elif isinstance(value, str):
                value = _plain(value)
            row[column] = value
        epoch = record["epoch"]
        row["hidden_dim"] = int(record["hidden_dim"])
        row["optimizer"] = _plain(record["optimizer"])
        row["seeds"] = int(record["n_seeds"])
        row["diverged"] = int(record["n_diverged"])
        row[f"loss@{epoch} [95% CI]"] = _interval_text(
            record["loss_at_epoch_mean"],
            record["loss_at_epoch_ci_low"],
            record["loss_at_epoch_ci_high"],
            4,
        )
        for name, label in (
            ("final_loss", "final loss"),
            ("train_accuracy", "train acc"),
            ("test_accuracy", "test acc"),
        ):
            row[f"{label} [95% CI]"] = _interval_text(
                record[f"{name}_mean"], record[f"{name}_ci_low"], record[f"{name}_ci_high"], 4
            )
        share = record["stuck_share"]
        row["stuck"] = "n/a" if not math.isfinite(share) else f"{share:.0%}"
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the two answers


@dataclass
class Answers:
    """The two questions' answers: `question1` and `question2` in words, `numbers` behind them."""

    question1: str
    question2: str
    numbers: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_MARKDOWN_SYNTAX = re.compile(r"([\\`*_\[\]()!|#~])")


def _plain(value: Any) -> str:
    """A value from the data as one line: control characters (newlines, escapes) become spaces."""
    return _CONTROL.sub(" ", str(value))


def _plot_text(value: Any) -> str:
    """A value from the data for a plot: one line, and `$` kept from starting matplotlib math."""
    return _plain(value).replace("$", r"\$")


def _markdown_text(value: Any) -> str:
    """A value from the data, inert in markdown: one line, HTML and markdown syntax escaped.

    Markdown syntax (links, images, emphasis, table pipes) is backslash-escaped.
    """
    return html.escape(_MARKDOWN_SYNTAX.sub(r"\\\1", _plain(value)))


def _markdown_cell(value: Any) -> str:
    """A cell the report wrote itself: HTML escaped, pipes escaped, one line."""
    return html.escape(_plain(value)).replace("|", "\\|")


def _setting_label(setting: Mapping[str, Any], clean: Callable[[Any], str] = _plain) -> str:
    return (
        f"learning_rate={setting['learning_rate']:g}, epochs={setting['epochs']}, "
        f"test_size={setting['test_size']:g}, split_seed={setting['split_seed']}, "
        f"standardize={str(setting['standardize']).lower()}, "
        f"positive_class={clean(setting['positive_class'])}"
    )


def _p_text(p: float) -> str:
    if not math.isfinite(p):
        return "p undefined"
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}" if p < 0.01 else f"p = {p:.2f}"


def _seeds_text(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def _trend(rows: pd.DataFrame, epoch: int) -> list[dict[str, Any]]:
    """Question 2 for one setting: per optimizer, Spearman's rho of loss@epoch vs hidden_dim."""
    results = []
    diverged = rows["diverged"].to_numpy(bool)
    hidden_all = rows["hidden_dim"].to_numpy(np.int64)
    seed_all = rows["seed"].to_numpy()
    loss_all = rows["_loss"].to_numpy(np.float64)
    for optimizer in _optimizers_of(rows):
        is_mine = (rows["optimizer"] == optimizer).to_numpy()
        ok = is_mine & ~diverged
        dims = np.unique(hidden_all[is_mine])
        order = np.argsort(hidden_all[ok], kind="stable")
        hidden, loss = hidden_all[ok][order], loss_all[ok][order]
        means = []
        for dim, low_end, high_end in zip(
            dims, np.searchsorted(hidden, dims), np.searchsorted(hidden, dims, "right"), strict=True
        ):
            n, mean, _, low, high = mean_interval(loss[low_end:high_end])
            means.append(
                {"hidden_dim": int(dim), "n": n, "mean": mean, "ci_low": low, "ci_high": high}
            )
        rho = p = math.nan
        if len(np.unique(hidden)) >= 2 and len(np.unique(loss[~np.isnan(loss)])) >= 2:
            rho, p = (float(v) for v in stats.spearmanr(hidden, loss))
        results.append(
            {
                "optimizer": optimizer,
                "epoch": epoch,
                "spearman_rho": rho,
                "p_value": p,
                "n_models": int(ok.sum()),
                "n_seeds": len(np.unique(seed_all[is_mine])),
                "n_diverged": int((is_mine & diverged).sum()),
                "means": means,
            }
        )
    return results


def _trend_words(results: Sequence[Mapping[str, Any]], clean: Callable[[Any], str]) -> list[str]:
    lines = []
    for result in results:
        epoch, rho, p = result["epoch"], result["spearman_rho"], result["p_value"]
        n_models, n_seeds = result["n_models"], result["n_seeds"]
        dims = [m["hidden_dim"] for m in result["means"]]
        span = f"hidden_dim {dims[0]}..{dims[-1]}" if len(dims) > 1 else f"hidden_dim {dims[0]}"
        over = f"over {_seeds_text(n_seeds)} x {len(dims)} hidden_dims ({n_models} models)"
        if len(dims) < 2:
            verdict = f"cannot tell: only {span} was swept, so there is no trend to measure"
        elif not math.isfinite(p):
            verdict = f"no trend can be measured ({n_models} models that did not diverge)"
        elif p < SIGNIFICANCE:
            way = "falls" if rho < 0 else "rises"
            verdict = (
                f"the loss at epoch {epoch} {way} as hidden_dim grows "
                f"(Spearman rho = {rho:+.2f}, {_p_text(p)} {over})"
            )
        else:
            verdict = (
                f"no monotonic trend at {_p_text(p)} (Spearman rho = {rho:+.2f} {over}); "
                "the differences between hidden_dims are within the seed-to-seed spread"
            )
        means_text = ", ".join(
            f"{m['hidden_dim']}: {_interval_text(m['mean'], m['ci_low'], m['ci_high'], 4)}"
            for m in result["means"]
        )
        line = f"- {clean(result['optimizer'])}: {verdict}. Mean loss at epoch {epoch} [95% CI] "
        line += f"by hidden_dim: {means_text}."
        if result["n_diverged"]:
            line += (
                f" {result['n_diverged']} diverged model(s) (NaN/inf loss) are left out and "
                "counted here."
            )
        lines.append(line)
    return lines


def _pairs(
    rows: pd.DataFrame, first: np.ndarray, second: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Positions in `rows` of the `first` and `second` rows with the same hidden_dim and seed."""
    keys = ["hidden_dim", "seed"]
    a = rows.loc[first, keys].assign(_a=np.flatnonzero(first))
    b = rows.loc[second, keys].assign(_b=np.flatnonzero(second))
    pairs = a.merge(b, on=keys).sort_values(keys, kind="stable")
    return pairs["_a"].to_numpy(), pairs["_b"].to_numpy()


def _question1(scan: _Scan, rows: pd.DataFrame) -> dict[str, Any]:
    """Question 1 for one setting: accuracy per optimizer, manual vs sgd, no-zero-grad's fall."""
    held_out = bool(rows["test_size"].iloc[0] > 0) and rows["test_accuracy"].notna().any()
    part = "test" if held_out else "train"
    numbers: dict[str, Any] = {
        "accuracy_part": part,
        "majority_accuracy": float(rows[f"_majority_{part}"].iloc[0]),
        "train_majority_accuracy": float(rows["_majority_train"].iloc[0]),
        "optimizers": {},
    }
    diverged = rows["diverged"].to_numpy(bool)
    accuracy = rows[f"{part}_accuracy"].to_numpy(np.float64)
    gap = rows["train_accuracy"].to_numpy(np.float64) - rows["_majority_train"].to_numpy()
    masks = {name: (rows["optimizer"] == name).to_numpy() for name in _optimizers_of(rows)}
    for optimizer, is_mine in masks.items():
        ok = is_mine & ~diverged
        n, mean, _, low, high = mean_interval(accuracy[ok])
        numbers["optimizers"][optimizer] = {
            "n": n, "mean": mean, "ci_low": low, "ci_high": high,
            "n_diverged": int((is_mine & diverged).sum()),
            "n_stuck": int((np.abs(gap[ok]) <= STUCK_TOLERANCE).sum()),
            "n_models": int(is_mine.sum()),
        }  # fmt: skip
    labels = rows.index.to_numpy()  # positions in scan.models
    if {"sgd", "manual"} <= set(masks):
        a, b = _pairs(rows, masks["sgd"], masks["manual"])
        largest, same_nonfinite = _pair_difference(scan, labels[a], labels[b])
        numbers["manual_vs_sgd_pairs"] = len(a)
        numbers["manual_vs_sgd_max_abs_difference"] = largest
        numbers["manual_matches_sgd_exactly"] = largest == 0.0 and same_nonfinite
    numbers["no_zero_grad_swept"] = "manual-no-zero-grad" in masks
    if {"sgd", "manual-no-zero-grad"} <= set(masks):
        a, b = _pairs(rows, masks["sgd"], masks["manual-no-zero-grad"])
        both = ~diverged[a] & ~diverged[b]
        n, mean, _, low, high = mean_interval(accuracy[a][both] - accuracy[b][both])
        numbers["no_zero_grad_accuracy_drop"] = {
            "n": n,
            "mean": mean,
            "ci_low": low,
            "ci_high": high,
        }
    return numbers


def _verdict(low: float, high: float, majority: float) -> str:
    """Say whether an accuracy interval lies above, below or around the majority baseline."""
    if not (math.isfinite(low) and math.isfinite(majority)):
        return ""
    if low > majority:
        return ": better than the majority-class baseline"
    if high < majority:
        return ": worse than the majority-class baseline"
    return ": not distinguishable from the majority-class baseline"


def _question1_words(numbers: Mapping[str, Any], clean: Callable[[Any], str]) -> list[str]:
    part, majority = numbers["accuracy_part"], numbers["majority_accuracy"]
    where = (
        "held-out accuracy (test rows never trained on)"
        if part == "test"
        else "training-data accuracy (NOT held out: test_size=0 evaluates on the training rows, "
        "as the notebook did)"
    )
    lines = [f"- {where[0].upper() + where[1:]}, mean [95% CI] over seeds:"]
    for optimizer, mine in numbers["optimizers"].items():
        interval = _interval_text(mine["mean"], mine["ci_low"], mine["ci_high"])
        text = f"  - {clean(optimizer)}: {interval} ({mine['n']} models"
        text += f", {mine['n_diverged']} diverged and left out" if mine["n_diverged"] else ""
        text += (
            f", {mine['n_stuck']} stuck near the majority class in training"
            if mine["n_stuck"]
            else ""
        )
        lines.append(text + ")" + _verdict(mine["ci_low"], mine["ci_high"], majority))
    if math.isfinite(majority):
        lines.append(
            f"  - Always predicting the majority class scores {majority:.3f}: a model is good "
            "when its whole interval lies above that."
        )
    if "manual_matches_sgd_exactly" in numbers:
        pairs, largest = numbers["manual_vs_sgd_pairs"], numbers["manual_vs_sgd_max_abs_difference"]
        if numbers["manual_matches_sgd_exactly"]:
            lines.append(
                f"- manual matched sgd exactly: over {pairs} paired models (same hidden_dim and "
                "seed) the largest absolute difference of the loss curves is 0.0. With gradients "
                "reset every epoch the hand-written step is the same arithmetic as "
                'torch.optim.SGD; there are no hidden "PyTorch optimizations".'
            )
        else:
            lines.append(
                f"- manual did NOT match sgd exactly: over {pairs} paired models the largest "
                f"absolute difference of the loss curves is {largest:.3g}."
            )
    if numbers["no_zero_grad_swept"]:
        lines.extend(_no_zero_grad_words(numbers, part))
    else:
        lines.append(
            "- The notebook's second loop was not swept; add `manual-no-zero-grad` to the "
            "optimizers to measure how far it falls."
        )
    return lines


def _no_zero_grad_words(numbers: Mapping[str, Any], part: str) -> list[str]:
    """How far the notebook's second loop fell against sgd, and why."""
    mine = numbers["optimizers"]["manual-no-zero-grad"]
    lines = []
    drop = numbers.get("no_zero_grad_accuracy_drop")
    if drop is not None:
        n, mean, low, high = drop["n"], drop["mean"], drop["ci_low"], drop["ci_high"]
        if math.isfinite(low) and low > 0:
            how = f"fell {part} accuracy by {_interval_text(mean, low, high)} against sgd"
        elif math.isfinite(high) and high < 0:
            how = f"did better than sgd, by {_interval_text(-mean, -high, -low)} {part} accuracy"
        else:
            how = (
                f"differed from sgd by {_interval_text(-mean, -high, -low)} {part} accuracy "
                "(its accuracy minus sgd's), an interval that includes no difference"
            )
        train_majority = numbers["train_majority_accuracy"]
        baseline = f" ({train_majority:.3f})" if math.isfinite(train_majority) else ""
        lines.append(
            f"- manual-no-zero-grad (the notebook's second loop) {how}, over {n} paired models "
            f"(same hidden_dim and seed); {mine['n_stuck']} of {mine['n']} ended stuck near the "
            f"training rows' majority-class accuracy{baseline}"
            + (f" and {mine['n_diverged']} diverged" if mine["n_diverged"] else "")
            + "."
        )
    lines.append(
        "- Why: that loop never resets its gradients (it calls the other model's "
        "optimizer.zero_grad()), so `.grad` holds the sum of every past epoch's gradient and each "
        "step applies that sum: a step that keeps growing, which early on can speed training up "
        "like momentum and later overshoots, leaving models that predict one class for every row "
        "(the majority-class accuracy, 0.667 on all of Iris, the notebook's number). The cause "
        'is gradient accumulation, not "PyTorch optimizations": `manual`, the same update with '
        "gradients reset, matches sgd exactly."
    )
    return lines


def _answers_of(numbers: Mapping[str, Any], clean: Callable[[Any], str] = _plain) -> Answers:
    """Word the answers from their numbers; `clean` renders each value taken from the data."""
    epoch = numbers["epoch"]
    settings = numbers["settings"]
    q1_parts, q2_parts, notes = [], [], []
    for entry in settings:
        setting, used = entry["setting"], entry["epoch"]
        if used != epoch:
            notes.append(
                f"Runs with {setting['epochs']} epochs have no epoch {epoch}; their last epoch "
                f"({used}) is used instead."
            )
        header = [f"With {_setting_label(setting, clean)}:"] if len(settings) > 1 else []
        q1_parts.append("\n".join(header + _question1_words(entry["question1"], clean)))
        q2_parts.append("\n".join(header + _trend_words(entry["question2"], clean)))
    if numbers["n_diverged"]:
        notes.append(
            f"{numbers['n_diverged']} of {numbers['n_models']} models diverged (NaN or infinite "
            "loss); they are counted in the tables and left out of every mean, interval and trend."
        )
    return Answers("\n\n".join(q1_parts), "\n\n".join(q2_parts), dict(numbers), notes)


def _answer(scan: _Scan) -> Answers:
    models, epoch = scan.models, scan.epoch
    numbers: dict[str, Any] = {
        "epoch": epoch,
        "n_models": len(models),
        "n_diverged": int(models["diverged"].sum()),
        "settings": [],
    }
    for setting, rows in _settings(models):
        used = int(min(epoch, int(setting["epochs"])))
        numbers["settings"].append(
            {
                "setting": setting,
                "epoch": used,
                "question1": _question1(scan, rows),
                "question2": _trend(rows, used),
            }
        )
    return _answers_of(numbers)


def answer_questions(frame: pd.DataFrame, epoch: int = EPOCH_OF_INTEREST) -> Answers:
    """Answer the notebook's questions from the results, per setting when runs differ.

    Question 1: is the model good, and did the hand-written update match torch.optim.SGD?
    Question 2: does the loss at epoch `epoch` fall as hidden_dim grows?
    """
    return _answer(_scan_frame(frame, epoch, curves=False))


# --------------------------------------------------------------------------- plots


def _run_title(frame: pd.DataFrame, clean: Callable[[Any], str] = _plain) -> str:
    """Return a plot title line with the run(s) and their parameters."""
    runs = frame["flow_run_id"].unique()
    parts = [
        f"run {clean(str(runs[0])[:8])}" if len(runs) == 1 else f"{len(runs)} runs",
        f"{frame['seed'].nunique()} seeds",
    ]
    for column, fmt in (("learning_rate", "lr={:g}"), ("epochs", "epochs={}"),
                        ("test_size", "test_size={:g}")):  # fmt: skip
        values = np.sort(frame[column].unique())
        parts.append(fmt.format(values[0]) if len(values) == 1 else f"{column} varies")
    return ", ".join(parts)


def _figure(n_panels: int, height: float = 3.8, width: float = 4.6, sharey: bool = True):
    import matplotlib

    matplotlib.use("Agg", force=False)  # no display: files only
    import matplotlib.pyplot as plt

    columns = min(n_panels, 3)
    lines = math.ceil(n_panels / columns)
    figure, axes = plt.subplots(
        lines, columns, figsize=(width * columns, height * lines), squeeze=False, sharey=sharey
    )
    return plt, figure, axes.ravel()


def _save(plt: Any, figure: Any, path: str) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=PNG_DPI)
    plt.close(figure)
    # A 256-colour palette keeps a plot about a third of its RGBA size, and so the markdown
    # artifact that embeds it; line plots lose nothing visible.
    image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB").quantize(colors=256)
    small = io.BytesIO()
    image.save(small, format="PNG", optimize=True)
    return _write_bytes(path, small.getvalue())


def _write_bytes(path: str, data: bytes) -> str:
    """Write `data` to a local path or URI atomically, replacing what was there.

    A link planted at the name is replaced, never written through.
    """
    folder, name = storage.split(path)
    storage.write_atomically(folder, name, lambda stream: stream.write(data), replace=True)
    return path


def _groups(models: pd.DataFrame) -> pd.DataFrame:
    """One row per curve group: its setting, hidden_dim, optimizer, models and diverged ones."""
    group = models["_group"].to_numpy()
    table = models.drop_duplicates("_group")[
        [*SETTING_COLUMNS, "hidden_dim", "optimizer", "_group"]
    ].sort_values("_group")
    table["n_models"] = np.bincount(group)[table["_group"].to_numpy()]
    diverged = np.bincount(group, weights=models["diverged"].to_numpy(np.float64))
    table["n_diverged"] = diverged[table["_group"].to_numpy()].astype(np.int64)
    return table.reset_index(drop=True)


def _curve_table(scan: _Scan) -> pd.DataFrame | None:
    """The plotted numbers: per group and grid epoch, n, mean with 95% CI, 10/50/90 percentiles."""
    if scan.curves is None:
        return None
    parts = []
    for record in _groups(scan.models).to_dict("records"):
        band = scan.curves.band(int(record["_group"]))
        if band is None:
            continue
        part = pd.DataFrame(band)
        for column in reversed((*SETTING_COLUMNS, "hidden_dim", "optimizer")):
            part.insert(0, column, record[column])
        parts.append(part)
    if not parts:
        return None
    return pd.concat(parts, ignore_index=True)


def _band_kind(curves: _Curves) -> tuple[str, str, str, str]:
    """Which line and band the loss plot draws: (line, band low, band high, their label)."""
    seeds = [int(count.max()) for count in curves.count if count is not None]
    if seeds and min(seeds) >= QUANTILE_BAND_SEEDS:
        low, high = (round(100 * q) for q in BAND)
        return "median", "q10", "q90", f"median (line) and {low}-{high}% of seeds (band)"
    return "mean", "ci_low", "ci_high", "mean (line) and 95% CI (band) over seeds"


def _plot_loss(scan: _Scan, path: str) -> str:
    models, curves, epoch = scan.models, scan.curves, scan.epoch
    assert curves is not None
    groups = _groups(models)
    varying = varying_settings(models)
    panels = []
    for values, rows in groups.groupby(list(SETTING_COLUMNS), sort=True, dropna=False,
                                       observed=True):  # fmt: skip
        setting = dict(zip(SETTING_COLUMNS, values, strict=True))
        suffix = ", ".join(
            f"{c}={_plot_text(setting[c])}" for c in varying if c != "data_fingerprint"
        )
        for optimizer in _optimizers_of(rows):
            title = _plot_text(optimizer) + (f"\n{suffix}" if suffix else "")
            panels.append((title, rows[rows["optimizer"] == optimizer]))
    plt, figure, axes = _figure(len(panels), sharey=False)
    dims = sorted(int(d) for d in groups["hidden_dim"].unique())
    colours = dict(zip(dims, plt.get_cmap("viridis")(np.linspace(0, 0.9, len(dims))), strict=True))
    handles: dict[int, Any] = {}
    line, low, high, what = _band_kind(curves)
    for axis, (title, rows) in zip(axes, panels, strict=False):
        top = 0.0
        shown = 0
        for dim, group in zip(rows["hidden_dim"], rows["_group"], strict=True):
            band = curves.band(int(group))
            if band is None:
                continue
            shown += 1
            x = band["epoch"]  # epoch e is loss_curve[e - 1]
            top = max(top, float(np.nanmax(band[line])))
            (handles[int(dim)],) = axis.plot(x, band[line], color=colours[dim], linewidth=1.1)
            axis.fill_between(x, band[low], band[high], color=colours[dim], alpha=0.15, lw=0)
        # The medians decide the scale: a band that spikes past them is cut, not the lines.
        axis.set_ylim(0, top * 1.1 if top > 0 else 1)
        used = int(min(epoch, int(rows["epochs"].max())))
        axis.axvline(used, color="grey", linestyle="--", linewidth=1)
        axis.annotate(
            f"epoch {used}", (used, 1), xycoords=("data", "axes fraction"),
            xytext=(3, -12), textcoords="offset points", fontsize=8, color="grey",
        )  # fmt: skip
        hidden = int(rows["n_diverged"].sum())
        left_out = int(curves.left_out[rows["_group"].to_numpy()].sum())
        if not shown:
            axis.text(0.5, 0.5, "every seed diverged", transform=axis.transAxes, ha="center")
        note = f"{hidden} diverged" if hidden else ""
        if left_out:
            note += (", " if note else "") + f"{left_out} with NaN/inf loss"
        axis.set_title(title + (f" ({note}, not shown)" if note else ""), fontsize=10)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    for axis in axes[len(panels) :]:
        axis.set_visible(False)
    for axis in axes[:: min(len(panels), 3)]:
        axis.set_ylabel("training loss (BCE)")
    if handles:
        listed = sorted(handles)
        if len(listed) > 12:  # a legend of every hidden_dim would be taller than the figure
            picks = np.unique(np.linspace(0, len(listed) - 1, 12).round().astype(int))
            listed = [listed[i] for i in picks]
        figure.legend(
            [handles[d] for d in listed],
            [str(d) for d in listed],
            title="hidden_dim",
            loc="center right",
            fontsize=8,
            title_fontsize=8,
        )
    title = _run_title(models, _plot_text)
    figure.suptitle(f"Training loss per epoch: {what}\n{title}", fontsize=11)
    figure.tight_layout(rect=(0, 0, 0.93 if handles else 1, 1))
    return _save(plt, figure, path)


def plot_loss_curves(frame: pd.DataFrame, path: str, epoch: int = EPOCH_OF_INTEREST) -> str:
    """Plot the training loss per epoch over seeds, one line and band per hidden_dim.

    The median and the 10-90% of seeds from `QUANTILE_BAND_SEEDS` seeds per curve on, the mean
    and its 95% CI below. One panel per optimizer; the epoch of interest is marked. Diverged
    seeds are left out. Returns `path` (a PNG).
    """
    return _plot_loss(_scan_frame(frame, epoch, fingerprints=False), path)


def _plot_accuracy(models: pd.DataFrame, path: str) -> str:
    groups = _settings(models)
    slots = models["hidden_dim"].nunique() * models["optimizer"].nunique()
    # wide enough for every slot, capped: past that the boxes and points just get narrower
    width = min(max(4.6, 1.5 + 0.3 * slots), 12.0)
    plt, figure, axes = _figure(len(groups), height=4.0, width=width)
    varying = varying_settings(models)
    boxes = False
    for axis, (setting, rows) in zip(axes, groups, strict=False):
        held_out = bool(setting["test_size"] > 0) and rows["test_accuracy"].notna().any()
        part = "test" if held_out else "train"
        optimizers = _optimizers_of(rows)
        step = 0.7 / max(len(optimizers), 1)
        # one slot per hidden_dim, evenly spaced: 4, 8, ..., 4096 stay readable side by side
        dims = np.sort(rows["hidden_dim"].unique())
        diverged = rows["diverged"].to_numpy(bool)
        hidden_all = rows["hidden_dim"].to_numpy()
        accuracy = rows[f"{part}_accuracy"].to_numpy(np.float64)
        for i, optimizer in enumerate(optimizers):
            mine = (rows["optimizer"] == optimizer).to_numpy() & ~diverged
            offset = (i - (len(optimizers) - 1) / 2) * step
            slot = np.searchsorted(dims, hidden_all[mine])
            values = accuracy[mine]
            by_slot = {int(k): v for k, v in pd.Series(slot).groupby(slot).indices.items()}
            crowded = [k for k, p in by_slot.items() if len(p) > BOX_THRESHOLD]
            few = ~np.isin(slot, crowded)
            label: str | None = _plot_text(optimizer)
            if few.any():
                rng = np.random.default_rng(i)  # fixed jitter: the picture is the same every time
                jitter = rng.uniform(-step / 4, step / 4, int(few.sum()))
                axis.scatter(
                    slot[few] + offset + jitter, values[few], s=12, alpha=0.6,
                    color=f"C{i}", label=label,
                )  # fmt: skip
                label = None
            summaries, places = [], []
            for k in crowded:
                finite = values[by_slot[k]]
                finite = finite[np.isfinite(finite)]
                if finite.size:
                    q10, q25, q50, q75, q90 = np.quantile(finite, [0.1, 0.25, 0.5, 0.75, 0.9])
                    summaries.append(
                        {"med": q50, "q1": q25, "q3": q75, "whislo": q10, "whishi": q90,
                         "fliers": []}
                    )  # fmt: skip
                    places.append(k + offset)
            if summaries:
                boxes = True
                axis.bxp(
                    summaries, positions=places, widths=step * 0.8, patch_artist=True,
                    showfliers=False, manage_ticks=False,
                    boxprops={"facecolor": f"C{i}", "alpha": 0.5, "linewidth": 0.8},
                    medianprops={"color": f"C{i}", "linewidth": 1.2},
                )  # fmt: skip
                if label is not None:
                    axis.scatter([], [], marker="s", color=f"C{i}", alpha=0.5, label=label)
            for k, positions in by_slot.items():
                _, mean, _, low, high = mean_interval(values[positions])
                if math.isfinite(low):
                    axis.errorbar(
                        k + offset, mean, yerr=[[mean - low], [high - mean]], fmt="_",
                        color="black", markersize=10, capsize=3, linewidth=1,
                    )  # fmt: skip
        majority = float(rows[f"_majority_{part}"].iloc[0])
        if math.isfinite(majority):
            axis.axhline(majority, color="grey", linestyle="--", linewidth=1,
                         label=f"majority class ({majority:.3f})")  # fmt: skip
        every = max(1, math.ceil(len(dims) / 20))
        axis.set_xticks(np.arange(len(dims))[::every], [str(d) for d in dims[::every]])
        axis.set_xlim(-0.5, len(dims) - 0.5)
        axis.set_xlabel("hidden_dim")
        axis.set_ylabel(
            "held-out (test) accuracy" if held_out else "training accuracy (not held out)"
        )
        suffix = ", ".join(
            f"{c}={_plot_text(setting[c])}" for c in varying if c != "data_fingerprint"
        )
        diverged = int(rows["diverged"].sum())
        title = (suffix + "\n" if suffix else "") + (
            f"{diverged} diverged, not shown" if diverged else ""
        )
        axis.set_title(title.strip(), fontsize=9)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="lower right")
    for axis in axes[len(groups) :]:
        axis.set_visible(False)
    what = "Accuracy per seed (points), mean and 95% CI (bars)"
    if boxes:
        what = (
            "Accuracy per seed: a box (median, quartiles, 10-90%)\n"
            f"above {BOX_THRESHOLD} seeds, else points; mean and 95% CI (bars)"
        )
    figure.suptitle(f"{what}\n{_run_title(models, _plot_text)}", fontsize=10 if boxes else 11)
    figure.tight_layout()
    return _save(plt, figure, path)


def plot_test_accuracy(frame: pd.DataFrame, path: str) -> str:
    """Plot accuracy per hidden_dim and optimizer, every seed a point, the mean with its CI.

    Held-out (test) accuracy; training accuracy, labelled so, where nothing was held out.
    Above `BOX_THRESHOLD` seeds per hidden_dim and optimizer a box summarises them instead of
    points. The majority-class accuracy is drawn as a dashed line. Returns `path` (a PNG).
    """
    scan = _scan_frame(frame, EPOCH_OF_INTEREST, curves=False, fingerprints=False)
    return _plot_accuracy(scan.models, path)


# --------------------------------------------------------------------------- rendering

# Columns of the summary table whose values come from the data, not from the report's numbers.
_DATA_COLUMNS = frozenset({*SETTING_COLUMNS, "optimizer"})


def _table_text(table: pd.DataFrame) -> str:
    return table.to_string(index=False)


def _markdown_table(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(_markdown_cell(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    cells = [_markdown_text if c in _DATA_COLUMNS else _markdown_cell for c in table.columns]
    body = [
        "| " + " | ".join(cell(v) for cell, v in zip(cells, row, strict=True)) + " |"
        for row in table.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body])


def _runs_text(frame: pd.DataFrame, clean: Callable[[Any], str] = _plain, most: int = 20) -> str:
    runs = frame.groupby("flow_run_id", sort=False, observed=True).agg(
        started=("run_started_at", "first"), status=("run_status", "first"), rows=("seed", "size")
    )
    runs = runs.sort_values("started")
    parts = [
        f"{clean(run)} ({row.started:%Y-%m-%d %H:%M} UTC, {row.rows} models, {clean(row.status)})"
        for run, row in runs.head(most).iterrows()
    ]
    if len(runs) > most:
        parts.append(f"and {len(runs) - most} more runs")
    return "; ".join(parts)


def _markdown_answers(answers: Answers) -> tuple[str, str, list[str]]:
    """The answers worded with every value from the data escaped for markdown."""
    try:
        escaped = _answers_of(answers.numbers, _markdown_text)
        return escaped.question1, escaped.question2, escaped.notes
    except (KeyError, TypeError, AttributeError, IndexError):  # answers built by hand
        return (
            html.escape(answers.question1),
            html.escape(answers.question2),
            [html.escape(_plain(note)) for note in answers.notes],
        )


def render_markdown(
    frame: pd.DataFrame,
    answers: Answers,
    summary: pd.DataFrame,
    images: Mapping[str, str | bytes] | None = None,
    epoch: int = EPOCH_OF_INTEREST,
) -> str:
    """Return the report as markdown: the two answers, the summary table, plots as data URIs.

    `images` maps a caption to a PNG path or PNG bytes; each is embedded as
    `![caption](data:image/png;base64,...)`, which Prefect's UI renders inside an artifact.
    Every value taken from the data (run ids, class names, optimizers) is escaped: no HTML, no
    markdown syntax and no table-breaking `|` reach the report from the results.
    """
    question1, question2, notes = _markdown_answers(answers)
    lines = [
        "# iris-sweep report",
        "",
        f"Runs: {_runs_text(frame, _markdown_text)}. "
        f"Parameters: {_run_title(frame, _markdown_text)}.",
        "",
        "## 1. Is the model good, and why did the hand-written update do worse than SGD?",
        "",
        question1,
        "",
        f"## 2. Does the loss at epoch {epoch} fall as hidden_dim grows?",
        "",
        question2,
        "",
    ]
    if notes:
        lines += ["**Notes.** " + " ".join(notes), ""]
    lines += [
        "## Summary per configuration",
        "",
        _markdown_table(summary_table(summary)),
        "",
        f"Means over the seeds that did not diverge, with 95% t-intervals; `stuck` = share of "
        f"seeds whose training accuracy is within {STUCK_TOLERANCE} of the majority-class "
        "accuracy. Epochs are 1-based: the loss of epoch e is `loss_curve[e - 1]`.",
        "",
    ]
    for caption, image in (images or {}).items():
        data = image if isinstance(image, bytes) else _read_bytes(image)
        encoded = base64.b64encode(data).decode("ascii")
        lines += [f"![{_markdown_text(caption)}](data:image/png;base64,{encoded})", ""]
    return "\n".join(lines)


def _read_bytes(path: str) -> bytes:
    fs, inner = storage.resolve(path)
    with fs.open_input_stream(inner) as stream:
        return stream.read()


def format_terminal(answers: Answers, summary: pd.DataFrame, epoch: int = EPOCH_OF_INTEREST) -> str:
    """Return the summary table and the two answers as plain text for a terminal."""
    lines = [
        _table_text(summary_table(summary)),
        "",
        "1. Is the model good, and why did the hand-written update do worse than SGD?",
        answers.question1,
        "",
        f"2. Does the loss at epoch {epoch} fall as hidden_dim grows?",
        answers.question2,
    ]
    if answers.notes:
        lines += ["", "Notes: " + " ".join(answers.notes)]
    return "\n".join(lines)


# --------------------------------------------------------------------------- files and CLI


def report_prefix(results_path: str) -> str:
    """Return the report files' name prefix for one results file: `_<its name>`."""
    name = results_path.rstrip("/").rsplit("/", 1)[-1]
    name = name[: -len(FILE_SUFFIX)] if name.endswith(FILE_SUFFIX) else name
    return "_" + name.lstrip("._")


@dataclass
class Report:
    """A built report: the statistics, the answers, the rendered texts and the files written.

    `curves` holds the loss-curve plot's numbers: per setting, hidden_dim, optimizer and drawn
    epoch, the models counted (`n`), the mean with its 95% CI and the 10/50/90th percentiles.
    """

    summary: pd.DataFrame
    answers: Answers
    markdown: str
    text: str
    paths: dict[str, str]
    curves: pd.DataFrame | None = None


def report_files(out_dir: str, prefix: str = REPORT_PREFIX) -> dict[str, str]:
    """Return the paths `build_report` writes, by `loss_curves`, `accuracy`, `markdown`, `text`."""
    return {
        "loss_curves": storage.child(out_dir, f"{prefix}-loss-curves.png"),
        "accuracy": storage.child(out_dir, f"{prefix}-accuracy.png"),
        "markdown": storage.child(out_dir, f"{prefix}.md"),
        "text": storage.child(out_dir, f"{prefix}.txt"),
    }


def written_text(results_path: str) -> str:
    """Return the terminal text the flow's report wrote beside the results file `results_path`."""
    text = report_files(folder_of(results_path), report_prefix(results_path))["text"]
    return _read_bytes(text).decode()


def _build(scan: _Scan, out_dir: str, prefix: str) -> Report:
    summary = _summarize(scan.models)
    answers = _answer(scan)
    paths = report_files(out_dir, prefix)
    _plot_loss(scan, paths["loss_curves"])
    _plot_accuracy(scan.models, paths["accuracy"])
    images = {"loss curves": paths["loss_curves"], "accuracy per seed": paths["accuracy"]}
    markdown = render_markdown(scan.models, answers, summary, images, scan.epoch)
    text = format_terminal(answers, summary, scan.epoch)
    _write_bytes(paths["markdown"], markdown.encode())
    _write_bytes(paths["text"], text.encode())
    return Report(summary, answers, markdown, text, paths, _curve_table(scan))


def build_report(
    frame: pd.DataFrame,
    out_dir: str,
    epoch: int = EPOCH_OF_INTEREST,
    prefix: str = REPORT_PREFIX,
) -> Report:
    """Build the report of `frame` and write its files under `out_dir`, replacing older ones.

    Files: `<prefix>-loss-curves.png`, `<prefix>-accuracy.png`, `<prefix>.md` (plots embedded)
    and `<prefix>.txt` (the terminal text); `Report.paths` names them by `loss_curves`,
    `accuracy`, `markdown` and `text`.
    """
    return _build(_scan_frame(frame, epoch), out_dir, prefix)


def folder_of(location: str) -> str:
    """Return the folder a results location names: itself, or a results file's folder."""
    if not location.rstrip("/").endswith(FILE_SUFFIX):
        return location
    if "://" in location:
        return location.rstrip("/").rsplit("/", 1)[0]
    return os.path.dirname(os.path.abspath(location))


def write_report(
    source: str | pd.DataFrame,
    out_dir: str | None = None,
    run_ids: Sequence[str] | None = None,
    epoch: int = EPOCH_OF_INTEREST,
    prefix: str = REPORT_PREFIX,
) -> dict[str, str]:
    """Write the plots, the markdown report and the terminal text; return their paths.

    `source` is a results location (folder, file or URI) or a results DataFrame; `run_ids`
    keeps only those flow runs. Files go to `out_dir` (default: the results folder), named as
    `build_report` says; keys of the returned dict: `loss_curves`, `accuracy`, `markdown`,
    `text`.
    """
    return report_of(source, out_dir, run_ids, epoch, prefix).paths


def report_of(
    source: str | pd.DataFrame,
    out_dir: str | None = None,
    run_ids: Sequence[str] | None = None,
    epoch: int = EPOCH_OF_INTEREST,
    prefix: str = REPORT_PREFIX,
) -> Report:
    """Build the report of a results location (or DataFrame), as `write_report`; return it all.

    A location is streamed: every results file is read column by column, batch by batch,
    keeping per-model scalars and per-configuration curve aggregates, never a whole curve
    column. Raises `ReportError` when there are no rows to report on, or `out_dir` is missing
    for a DataFrame.
    """
    epoch = _check_epoch(epoch)
    if isinstance(source, pd.DataFrame):
        if out_dir is None:
            raise ReportError("out_dir: required when the report is built from a DataFrame")
        frame = source
        if run_ids is not None:
            frame = frame[frame["flow_run_id"].isin([str(r) for r in run_ids])]
        if len(frame) == 0:
            wanted = f" of run(s) {', '.join(run_ids)}" if run_ids else ""
            raise ReportError(f"report: no results rows{wanted} to report on")
        rows = _Source.of_frame(frame)
    else:
        filesystem, _ = storage.resolve(source)
        rows = _Source(list_result_files(source), filesystem)
        out_dir = out_dir if out_dir is not None else folder_of(source)
    return _build(_scan(rows, epoch, run_ids), out_dir, prefix)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of `python -m irismodel.report` / `iris-sweep-report`."""
    parser = argparse.ArgumentParser(
        prog="iris-sweep-report",
        description="Rebuild the summary, the two answers and the plots from past iris-sweep "
        "runs' Parquet results.",
    )
    parser.add_argument("location", metavar="RESULTS_LOCATION", help="folder, file or URI")
    parser.add_argument(
        "--run", action="append", dest="runs", metavar="FLOW_RUN_ID",
        help="keep only this flow run (repeatable; default: every run)",
    )  # fmt: skip
    parser.add_argument(
        "--epoch", type=int, default=EPOCH_OF_INTEREST,
        help=f"epoch of interest, 1-based (default {EPOCH_OF_INTEREST}, the notebook's)",
    )  # fmt: skip
    parser.add_argument(
        "--out", default=None, metavar="DIR",
        help="where to write the PNGs and report files (default: the results folder)",
    )  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Print the summary and the answers; write plots and report files. Exit 2 on bad input."""
    args = build_parser().parse_args(argv)
    try:
        report = report_of(args.location, args.out, args.runs, args.epoch, REPORT_PREFIX)
    except (ValueError, OSError) as error:  # ReportError, ResultsError, locations, --out
        print(f"iris-sweep-report: error: {error}", file=sys.stderr)
        return 2
    print(report.text)
    print()
    for name in ("loss_curves", "accuracy", "markdown"):
        print(f"{name.replace('_', ' ')}: {report.paths[name]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

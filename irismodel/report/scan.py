"""The rows a report is computed from: one model a row, read in two passes, columns derived."""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from irismodel.store import list_result_files, locations
from irismodel.store.reader import (
    CURVE_COLUMN,
    READ_THREADS,
    REFERENCE_CURVE_COLUMN,
    Source,
    each_curve,
    element_at,
    read_models,
    take,
)

from .curves import Curves, PerModel, by_length, slope_epochs
from .settings import ALL_OUTCOMES, SETTING_COLUMNS, ReportError, check_epoch, optimizer_order

SPLIT_COLUMNS = ("data_fingerprint", "positive_class", "test_size", "split_seed")
# Scalars compared to tell whether manual's rows are sgd's rows again (the batched engines run
# both rules through the same code): equal in every one, for every seed, they are duplicates.
_SAME_ROW_COLUMNS = ("_loss", "final_train_loss", "train_accuracy", "test_accuracy")


@dataclass
class Scan:
    """Everything a report is computed from: per-model scalars and per-group curve sums.

    `models` has one row per setting x hidden_dim x optimizer x split x seed (the latest run)
    and derived columns starting with `_`; `per_model` a few losses per model.
    """

    source: Source
    models: pd.DataFrame
    epoch: int
    curves: Curves
    per_model: PerModel | None = None

    def curves_of(self, positions: np.ndarray, reference: bool = False) -> dict[int, np.ndarray]:
        """The loss curves (or the notebook loop's) of the models at `positions` (a few only)."""
        out: dict[int, np.ndarray] = {}

        def visit(index: int, mine: np.ndarray, lists: pa.Array) -> None:
            for position, values in zip(mine.tolist(), lists.to_pylist(), strict=True):
                out[position] = np.asarray(values if values is not None else [], np.float64)

        column = REFERENCE_CURVE_COLUMN if reference else CURVE_COLUMN
        if len(positions):
            each_curve(self.source, self.models, positions, visit, column=column)
        return out


def rules_of(rows: pd.DataFrame) -> list[tuple[str, str, np.ndarray]]:
    """Per rule shown, in display order: (optimizer, the name it is shown under, its rows' mask)."""
    optimizer = rows["optimizer"].astype(str).to_numpy()
    shown = ~rows["_duplicate"].to_numpy(bool)
    out = []
    for name in optimizer_order(np.unique(optimizer[shown]).tolist()):
        mine = (optimizer == name) & shown
        out.append((name, str(rows["_rule"].iloc[np.flatnonzero(mine)[0]]), mine))
    return out


def _positive_count(
    n: np.ndarray, accuracy: np.ndarray, precision: np.ndarray, recall: np.ndarray
) -> float:
    """Infer the number of positive rows P from each model's metrics on the same N rows.

    FP + FN = N (1 - accuracy), FP = TP/precision - TP, FN = TP/recall - TP give TP, then
    P = TP / recall; with TP = 0, P <= N (1 - accuracy), exact if only negatives are predicted.
    """
    valid = np.isfinite(accuracy) & np.isfinite(precision) & np.isfinite(recall) & (n > 0)
    e = valid & (precision > 0) & (recall > 0) & (accuracy < 1)
    if e.any():
        true_pos = n[e] * (1 - accuracy[e]) / (1 / precision[e] + 1 / recall[e] - 2)
        return float(np.median(np.round(true_pos / recall[e])))
    none_predicted = valid & (precision == 0) & (recall == 0)
    if none_predicted.any():
        return float(np.min(np.round(n[none_predicted] * (1 - accuracy[none_predicted]))))
    return math.nan


def _majority(frame: pd.DataFrame, part: str) -> np.ndarray:
    """Per row, the majority-class accuracy `max(p, 1 - p)` of its `part` rows, NaN if unknown.

    Older files lack `n_<part>_positive`: the count is inferred from the metrics of the split.
    """
    out = np.full(len(frame), math.nan)
    n_all = frame[f"n_{part}"].to_numpy(np.float64)
    metrics = [
        frame[f"{part}_{m}"].to_numpy(np.float64) for m in ("accuracy", "precision", "recall")
    ]
    given_all = frame[f"n_{part}_positive"].to_numpy(np.float64)
    split = frame.groupby(list(SPLIT_COLUMNS), sort=False, dropna=False, observed=True)
    for positions in split.indices.values():
        given = given_all[positions][np.isfinite(given_all[positions])]
        # one split has one set of rows: any row's count is every row's
        positives = float(given[0]) if given.size else math.nan
        if not math.isfinite(positives):
            positives = _positive_count(n_all[positions], *(m[positions] for m in metrics))
        with np.errstate(divide="ignore", invalid="ignore"):
            share = positives / n_all[positions]
        out[positions] = np.maximum(share, 1 - share)
    return out


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
    keys = pd.DataFrame({c: frame[c].to_numpy()[order] for c in ("_group", "split_seed", "seed")})
    order = order[~keys.duplicated(keep="last").to_numpy()]
    optimizer = frame["optimizer"].cat.codes
    by_name = [frame["seed"], frame["split_seed"], optimizer, frame["hidden_dim"]]  # last first
    order = order[np.lexsort([c.to_numpy()[order] for c in by_name])]  # stable
    frame = take(frame, order)
    frame["_epoch"] = np.minimum(frame["epochs"].to_numpy(np.int64), epoch).astype(np.int32)
    frame["_majority_train"] = _majority(frame, "train")
    frame["_majority_test"] = _majority(frame, "test")
    spent = [f"{p}_{m}" for p in ("train", "test") for m in ("precision", "recall")]
    return frame.drop(columns=[*spent, "n_train_positive", "n_test_positive"])


def _read_curves(scan: Scan) -> None:
    """Pass 2: per model a few losses and its first epoch below the baseline; curve sums.

    Reads the kept models' curves batch by batch and keeps none; the sums leave diverged out.
    """
    models, curves, source, size = scan.models, scan.curves, scan.source, len(scan.models)
    lengths = np.unique(models["epochs"].to_numpy(np.int64))
    baseline = models["baseline_loss"].to_numpy(np.float64)
    per_model = PerModel(size, slope_epochs(lengths, scan.epoch), baseline)
    loss, first = np.full(size, math.nan), np.full(size, math.nan)
    used = models["_epoch"].to_numpy(np.int64)
    known_bad = models["diverged"].to_numpy(bool) | (models["outcome"] == "diverged").to_numpy()
    group = models["_group"].to_numpy(np.int64)

    def visit(index: int, positions: np.ndarray, lists: pa.Array) -> None:
        loss[positions] = element_at(lists, used[positions], repr(source.paths[index]))
        first[positions] = pc.list_element(lists, 0).to_numpy(zero_copy_only=False)
        lengths = pc.list_value_length(lists).fill_null(0).to_numpy(zero_copy_only=False)
        for chosen, matrix in by_length(lists, lengths):
            rows = positions if chosen is None else positions[chosen]
            per_model.add(rows, matrix)
            with np.errstate(invalid="ignore"):
                bad = known_bad[rows] | ~(matrix[:, -1] <= matrix[:, 0])
            key = np.where(bad, -1, group[rows])
            # A file's rows come one configuration after another: a batch is a few runs, each
            # a slice, never a copy. Rows that interleave configurations are sorted once.
            if np.count_nonzero(key[1:] != key[:-1]) > max(16, len(key) // 32):
                order = np.argsort(key, kind="stable")
                key, rows, matrix = key[order], rows[order], matrix[order]
            cuts = np.flatnonzero(key[1:] != key[:-1]) + 1
            for start, end in zip([0, *cuts.tolist()], [*cuts.tolist(), len(key)], strict=True):
                if key[start] >= 0:
                    curves.add(int(key[start]), matrix[start:end])

    each_curve(source, models, np.arange(size), visit, READ_THREADS)
    models["_loss"], models["_first"], models["_first_below"] = loss, first, per_model.first_below
    scan.per_model = per_model


def _mark_duplicates(models: pd.DataFrame) -> None:
    """Set `_duplicate` on manual rows that repeat sgd's, setting by setting, and `_rule`."""
    duplicate = np.zeros(len(models), dtype=bool)
    keys = [*SETTING_COLUMNS, "split_seed", "hidden_dim", "seed"]
    sgd, manual = (models[models["optimizer"] == name] for name in ("sgd", "manual"))
    if len(sgd) and len(manual):
        columns = [*keys, *_SAME_ROW_COLUMNS]
        pairs = manual[columns].reset_index()
        pairs = pairs.merge(sgd[columns], on=keys, how="left", suffixes=("", "_sgd"))
        pairs["_same"] = True
        for name in _SAME_ROW_COLUMNS:
            a, b = pairs[name].to_numpy(np.float64), pairs[f"{name}_sgd"].to_numpy(np.float64)
            pairs["_same"] &= (a == b) | (np.isnan(a) & np.isnan(b))
        # a setting's manual rows all repeat sgd's, or none counts as a duplicate
        settings = pairs.groupby(list(SETTING_COLUMNS), dropna=False, observed=True)["_same"]
        duplicate[pairs.loc[settings.transform("all"), "index"].to_numpy()] = True
    models["_duplicate"] = duplicate
    setting = models.groupby(list(SETTING_COLUMNS), dropna=False, observed=True).ngroup()
    merged = np.isin(setting.to_numpy(), setting.to_numpy()[duplicate])
    rule = models["optimizer"].cat.add_categories("sgd = manual")
    rule[merged & (models["optimizer"] == "sgd").to_numpy()] = "sgd = manual"
    models["_rule"] = rule


def scan(rows: str | pd.DataFrame, epoch: int, run_ids: Sequence[str] | None = None) -> Scan:
    """Read a results location (or DataFrame) in two passes; `ReportError` if no rows."""
    epoch = check_epoch(epoch)
    if isinstance(rows, pd.DataFrame):
        source = Source.of_frame(rows) if len(rows) else Source([])
    else:
        filesystem, _ = locations.resolve(rows)
        source = Source(list_result_files(rows), filesystem)
    # no name holds the frame as read: preparing it frees it while the copy is made
    models = _prepare_models(read_models(source, run_ids), epoch)
    if models.empty:
        wanted = f" of run(s) {', '.join(str(r) for r in run_ids)}" if run_ids else ""
        hint = "" if run_ids else " (is the location or run right?)"
        raise ReportError(f"report: no results rows{wanted} to report on{hint}")
    lengths = models.groupby("_group", sort=True)["epochs"].max().to_numpy()
    found = Scan(source, models, epoch, Curves(lengths, epoch))
    _read_curves(found)
    # rows written before the outcome column: diverged as the rule says, or unknown
    stored = models["outcome"].astype(object).to_numpy()
    final, first = models["final_train_loss"].to_numpy(np.float64), models["_first"].to_numpy()
    with np.errstate(invalid="ignore"):
        blown = models["diverged"].to_numpy(bool) | ~np.isfinite(final) | (final > first)
    derived = np.where(blown, "diverged", "unknown")
    models["_outcome"] = pd.Categorical(np.where(np.isin(stored, ALL_OUTCOMES), stored, derived))
    _mark_duplicates(models)
    return found

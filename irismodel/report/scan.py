"""Reading a results source in two passes: the models' scalars, then their curves' aggregates."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from irismodel.store.reader import (
    CURVE_COLUMN,
    READ_THREADS,
    Source,
    each_curve,
    element_at,
    read_models,
    take,
)

from .baselines import majority_accuracy, outcomes
from .curves import Curves, PerModel, by_length, slope_epochs
from .settings import DIVERGED, SETTING_COLUMNS, ReportError, check_epoch

# Scalars compared to tell whether manual's rows are sgd's rows again (the batched engines run
# both rules through the same code): equal in every one, for every seed, they are duplicates.
_SAME_ROW_COLUMNS = ("_loss", "final_train_loss", "train_accuracy", "test_accuracy")


@dataclass
class Scan:
    """Everything a report is computed from: per-model scalars and per-group curve sums.

    `models` has one row per setting x hidden_dim x optimizer x seed (the latest run), with
    `_group` (its curve group), `_epoch` (the epoch read), `_loss` (the loss there), `_first`
    (the first epoch's loss), `_outcome`, `_majority_train`/`_majority_test` and `_duplicate`
    (a manual row identical to sgd's of the same hidden_dim and seed), and `_first_below` (the
    first epoch whose loss is below `baseline_loss`: 0 if none, NaN without a baseline).
    `per_model` keeps each model's loss at a few fixed epochs, for the slope by epoch.
    """

    source: Source
    models: pd.DataFrame
    epoch: int
    curves: Curves | None
    per_model: PerModel | None = None


def epoch_used(frame: pd.DataFrame, epoch: int = 100) -> pd.Series:
    """Return, per row, the epoch read: `epoch`, or the row's last epoch if it trained fewer."""
    epoch = check_epoch(epoch)
    return frame["epochs"].clip(upper=epoch).astype(int)


def loss_at_epoch(frame: pd.DataFrame, epoch: int = 100) -> pd.Series:
    """Return, per row, the loss of epoch `epoch` (1-based): `loss_curve[epoch - 1]`."""
    used = epoch_used(frame, epoch).to_numpy(np.int64)
    lists = pa.array(frame[CURVE_COLUMN], from_pandas=True)
    return pd.Series(element_at(lists, used, "frame"), index=frame.index, dtype=np.float64)


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
                         "split": frame["split_seed"].to_numpy()[order],
                         "seed": frame["seed"].to_numpy()[order]})  # fmt: skip
    order = order[~keys.duplicated(keep="last").to_numpy()]
    del keys
    by_name = (
        frame[c].to_numpy()[order] if c != "optimizer" else frame[c].cat.codes.to_numpy()[order]
        for c in ("seed", "split_seed", "optimizer", "hidden_dim")
    )
    order = order[np.lexsort(tuple(by_name))]  # stable: hidden_dim, optimizer, split, seed
    frame = take(frame, order)
    frame["_epoch"] = np.minimum(frame["epochs"].to_numpy(np.int64), epoch).astype(np.int32)
    frame["_majority_train"] = majority_accuracy(frame, "train").to_numpy()
    frame["_majority_test"] = majority_accuracy(frame, "test").to_numpy()
    spent = [f"{p}_{m}" for p in ("train", "test") for m in ("precision", "recall")]
    return frame.drop(columns=[*spent, "n_train_positive", "n_test_positive"])


def _read_curves(scan: Scan) -> None:
    """Pass 2: per model a few losses and its first epoch below the baseline; curve sums.

    Per model: the loss at the epoch, at epoch 1 and at the slope epochs, and the first epoch
    below the linear baseline; per group, the curve sums.

    Reads only the curves of the models kept, batch by batch, and keeps none of them. The sums
    leave out every model that diverged (by its flag, its outcome, or a curve ending above its
    start or not finite).
    """
    models, curves, source = scan.models, scan.curves, scan.source
    size = len(models)
    lengths_all = models["epochs"].to_numpy(np.int64)
    baseline = models["baseline_loss"].to_numpy(np.float64)
    per_model = PerModel(size, slope_epochs(np.unique(lengths_all), scan.epoch), baseline)
    loss, first = np.full(size, math.nan), np.full(size, math.nan)
    used = models["_epoch"].to_numpy(np.int64)
    known_bad = models["diverged"].to_numpy(bool) | (models["outcome"] == DIVERGED).to_numpy()
    group = models["_group"].to_numpy(np.int64)

    def visit(index: int, positions: np.ndarray, lists: pa.Array) -> None:
        loss[positions] = element_at(lists, used[positions], repr(source.paths[index]))
        first[positions] = pc.list_element(lists, 0).to_numpy(zero_copy_only=False)
        lengths = pc.list_value_length(lists).fill_null(0).to_numpy(zero_copy_only=False)
        for chosen, matrix in by_length(lists, lengths):
            rows = positions if chosen is None else positions[chosen]
            per_model.add(rows, matrix)
            if curves is None:
                continue
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
    models["_loss"] = loss
    models["_first"] = first
    models["_first_below"] = per_model.first_below
    scan.per_model = per_model


def _mark_duplicates(models: pd.DataFrame) -> None:
    """Set `_duplicate` on manual rows that repeat sgd's, setting by setting."""
    duplicate = np.zeros(len(models), dtype=bool)
    keys = [*SETTING_COLUMNS, "split_seed", "hidden_dim", "seed"]
    sgd = models[models["optimizer"] == "sgd"]
    manual = models[models["optimizer"] == "manual"]
    if len(sgd) and len(manual):
        pairs = (
            manual[keys + list(_SAME_ROW_COLUMNS)]
            .reset_index()
            .merge(sgd[keys + list(_SAME_ROW_COLUMNS)], on=keys, how="left", suffixes=("", "_sgd"))
        )
        same = np.ones(len(pairs), dtype=bool)
        for name in _SAME_ROW_COLUMNS:
            a, b = pairs[name].to_numpy(np.float64), pairs[f"{name}_sgd"].to_numpy(np.float64)
            same &= (a == b) | (np.isnan(a) & np.isnan(b))
        pairs["_same"] = same
        # a setting's manual rows all repeat sgd's, or none counts as a duplicate
        settings = pairs.groupby(list(SETTING_COLUMNS), dropna=False, observed=True)["_same"]
        pairs["_all"] = settings.transform("all")
        duplicate[pairs.loc[pairs["_all"], "index"].to_numpy()] = True
    models["_duplicate"] = duplicate


def scan_source(
    source: Source,
    epoch: int,
    run_ids: Sequence[str] | None = None,
    curves: bool = True,
) -> Scan:
    """Read `source` in two passes: the models' scalars, then their curves batch by batch."""
    epoch = check_epoch(epoch)
    # no name holds the frame as read: preparing it frees it while the copy is made
    models = _prepare_models(read_models(source, run_ids), epoch)
    if models.empty:
        wanted = f" of run(s) {', '.join(str(r) for r in run_ids)}" if run_ids else ""
        hint = "" if run_ids else " (is the location right?)"
        raise ReportError(f"report: no results rows{wanted} to report on{hint}")
    aggregates = None
    if curves:
        lengths = models.groupby("_group", sort=True)["epochs"].max().to_numpy()
        aggregates = Curves(lengths, epoch)
    scan = Scan(source, models, epoch, aggregates)
    _read_curves(scan)
    models["_outcome"] = pd.Categorical(outcomes(models))
    _mark_duplicates(models)
    return scan


def scan_frame(frame: pd.DataFrame, epoch: int, curves: bool = True) -> Scan:
    """Scan a results DataFrame (as `read_results` returns) as a location is scanned."""
    if frame is None or len(frame) == 0:
        raise ReportError("report: no results rows to report on (is the location or run right?)")
    check_epoch(epoch)
    return scan_source(Source.of_frame(frame), epoch, curves=curves)

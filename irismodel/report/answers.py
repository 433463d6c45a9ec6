"""The numbers behind the answers, per setting: both questions, and the secondary summaries."""

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .reference import rule_check
from .scan import Scan, rules_of
from .settings import accuracy_part, settings_of
from .statistics import (
    ACCURACY_BOUNDS,
    UNBOUNDED,
    Interval,
    block_matrix,
    crossed_interval,
    crossed_intervals,
    fall_test,
    rate_interval,
    seed_slopes,
    theil_sen_slopes,
)
from .summary import outcome_counts


@dataclass
class Answers:
    """The two questions' answers in words, the `numbers` behind them, notes and warnings."""

    question1: str
    question2: str
    numbers: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    headline: list[str] = field(default_factory=list)  # both answers in a few lines, first
    secondary: list[str] = field(default_factory=list)  # pre-specified, beyond the notebook


def _interval(interval: Interval) -> dict[str, Any]:
    return {**asdict(interval), "covers": interval.covers()}


def _over_blocks(rows: pd.DataFrame, values: np.ndarray, bounds: tuple[float, float]) -> dict:
    """The interval of the per-(split, seed) means of `values` over their hidden_dims."""
    means = pd.Series(values).groupby([rows["split_seed"].to_numpy(), rows["seed"].to_numpy()])
    means = means.mean()
    splits, seeds = (means.index.get_level_values(i).to_numpy() for i in (0, 1))
    return _interval(crossed_interval(block_matrix(splits, seeds, means.to_numpy())[2], bounds))


def _question1(scan: Scan, rows: pd.DataFrame) -> dict[str, Any]:
    """Question 1 for one setting: outcomes and accuracy per rule over every model; the check."""
    part = accuracy_part(rows)
    outcome = rows["_outcome"].astype(object).to_numpy()
    baselines = rows.groupby("split_seed")["baseline_loss"].first().to_numpy(np.float64)
    majority = rows[f"_majority_{part}"].to_numpy(np.float64)
    numbers: dict[str, Any] = {
        "accuracy_part": part,
        "majority_accuracy": float(np.nanmedian(majority)),
        "baseline_loss": float(np.nanmedian(baselines)) if len(baselines) else math.nan,
        "baseline_range": (float(np.nanmin(baselines)), float(np.nanmax(baselines)))
        if np.isfinite(baselines).any() else (math.nan, math.nan),
        "n_splits": int(rows["split_seed"].nunique()),
        "manual_repeats_sgd": bool(rows["_duplicate"].any()),
        "engines": sorted({str(e) for e in rows["engine"].dropna().unique()}),
        "rules": {},
        "against_sgd": {},
    }  # fmt: skip
    accuracy = rows[f"{part}_accuracy"].to_numpy(np.float64)
    above = accuracy > majority + 1e-12
    final = rows["final_train_loss"].to_numpy(np.float64)
    rules = rules_of(rows)
    for name, label, mine in rules:
        subset, n_above = rows[mine], int(above[mine].sum())
        converged = np.where(outcome[mine] == "converged", accuracy[mine], np.nan)
        numbers["rules"][name] = {
            "label": label, "n_models": int(mine.sum()), "n_seeds": int(subset["seed"].nunique()),
            **outcome_counts(outcome[mine]), "accuracy_median": float(np.nanmedian(accuracy[mine])),
            "n_above_majority": n_above, "above_majority": rate_interval(n_above, int(mine.sum())),
            "accuracy": _over_blocks(subset, accuracy[mine], ACCURACY_BOUNDS),
            "accuracy_converged": _over_blocks(subset, converged, ACCURACY_BOUNDS),
            "final_loss_median": float(np.nanmedian(final[mine])),
        }  # fmt: skip
    frame = rows.assign(_a=accuracy, _f=final)
    sgd, on = frame[(rows["optimizer"] == "sgd").to_numpy()], ["hidden_dim", "split_seed", "seed"]
    for name, _, mine in rules:
        pairs = frame[mine].merge(sgd, on=on, suffixes=("", "_sgd"))
        if name == "sgd" or pairs.empty:
            continue
        numbers["against_sgd"][name] = {"n_pairs": len(pairs)}
        for key, c, bounds in (("accuracy", "_a", (-1.0, 1.0)), ("final_loss", "_f", UNBOUNDED)):
            paired = pairs[c].to_numpy(np.float64) - pairs[f"{c}_sgd"].to_numpy()
            numbers["against_sgd"][name][key] = _over_blocks(pairs, paired, bounds)
    numbers["reference"] = rule_check(scan, rows)
    older = not rows["reference_checked"].notna().any()
    missing = "written by an older version" if older else "no model was checked"
    numbers["reference_missing"] = missing if numbers["reference"] is None else None
    return numbers


class Blocks:
    """The (split, seed) blocks of `rows` and their hidden_dims, found once for many values."""

    def __init__(self, rows: pd.DataFrame) -> None:
        self.split_of, self.seed_of = rows["split_seed"].to_numpy(), rows["seed"].to_numpy()
        codes = pd.factorize(pd.MultiIndex.from_arrays([self.split_of, self.seed_of]))[0]
        ids, self.first, block_at = np.unique(codes, return_index=True, return_inverse=True)
        self.dims, dim_at = np.unique(rows["hidden_dim"].to_numpy(), return_inverse=True)
        self.shape, self.at = (len(ids), len(self.dims)), (block_at, dim_at)

    def of(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, Callable]:
        """(hidden_dims, matrix blocks x hidden_dims, per-block values -> splits x seeds matrix).

        Blocks are (split, seed) pairs with a finite value at every hidden_dim.
        """
        matrix = np.full(self.shape, math.nan)
        matrix[self.at] = values
        full = np.isfinite(matrix).all(axis=1)
        where = self.first[full]  # each full block's first row
        splits, seeds = self.split_of[where], self.seed_of[where]
        return self.dims, matrix[full], lambda block: block_matrix(splits, seeds, block)[2]


def blocks_of(rows: pd.DataFrame, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, Callable]:
    """`Blocks(rows).of(values)`: the blocks of one set of values."""
    return Blocks(rows).of(values)


def trend(rows: pd.DataFrame, values: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """The blocked fall of `values` with hidden_dim (test, slopes, power), and its blocks."""
    dims, matrix, cells = blocks_of(rows, values)
    test, p = fall_test(matrix)
    result: dict[str, Any] = {"test": test, "p_value": p, "n_blocks": len(matrix),
                              "dims": [int(d) for d in dims]}  # fmt: skip
    if len(dims) > 1 and len(matrix):
        slopes = seed_slopes(matrix, dims)
        result["slope"] = _interval(crossed_interval(cells(slopes)))
        robust = cells(theil_sen_slopes(matrix, dims))
        result["theil_sen"] = _interval(crossed_interval(robust, statistic="median"))
        result["slope_sd"] = float(np.std(slopes, ddof=1)) if len(slopes) > 1 else math.nan
    else:
        empty = _interval(crossed_interval(np.empty((0, 0))))
        result.update(slope=empty, theil_sen=empty, slope_sd=math.nan)
    se, low, high = (result["slope"][k] for k in ("se", "low", "high"))
    # a two-sided 5% test has 80% power against a true slope of (1.96 + 0.84) standard errors
    result["detectable"] = 2.8 * se if math.isfinite(se) else math.nan
    result["half_width"] = (high - low) / 2 if math.isfinite(low + high) else math.nan
    return result, matrix


def _question2(rows: pd.DataFrame, epoch: int) -> list[dict[str, Any]]:
    """Question 2 for one setting: per rule, the fall of loss@epoch with hidden_dim, by block."""
    results = []
    loss_all = rows["_loss"].to_numpy(np.float64)
    for name, label, mine in rules_of(rows):
        subset, loss = rows[mine], loss_all[mine]
        found, matrix = trend(subset, loss)
        hidden = subset["hidden_dim"].to_numpy()
        medians = [
            {"hidden_dim": int(d),
             "median": float(np.median(matrix[:, j])) if len(matrix) else math.nan,
             "n_left_out": int((~np.isfinite(loss[hidden == d])).sum())}
            for j, d in enumerate(found["dims"])
        ]  # fmt: skip
        results.append({
            "optimizer": name, "label": label, "epoch": epoch,
            "n_seeds": int(subset["seed"].nunique()),
            "n_splits": int(subset["split_seed"].nunique()),
            "medians": medians, "n_left_out": int((~np.isfinite(loss)).sum()),
            "n_models": int(mine.sum()), **found,
        })  # fmt: skip
    return results


def _slopes(rows: pd.DataFrame, columns: np.ndarray) -> list[dict[str, Any]]:
    """Per column of `columns` (models x k): the mean per-block slope on hidden_dim, and more.

    Each is the mean per-(split, seed) slope of the column's values on hidden_dim, its interval
    and its blocks; the blocks are found, and the resamples drawn, once for all the columns.
    """
    blocks, counts, cells = Blocks(rows), [], []
    for values in columns.T:
        dims, matrix, cells_of = blocks.of(values.astype(np.float64))
        complete = len(dims) > 1 and len(matrix)
        counts.append(len(matrix))
        cells.append(cells_of(seed_slopes(matrix, dims)) if complete else np.empty((0, 0)))
    return [
        {"n_blocks": n, "mean": found.mean, "low": found.low, "high": found.high}
        for n, found in zip(counts, crossed_intervals(cells), strict=True)
    ]


def _first_beating(rows: pd.DataFrame, first_below: np.ndarray) -> dict[str, Any]:
    """The first epoch below the baseline: per hidden_dim, and its blocked fall with it."""
    known = np.isfinite(first_below)
    censored = known & (first_below == 0)
    # censored at the run's length: after every model that beat the baseline within it
    values = np.where(censored, rows["epochs"].to_numpy(np.float64) + 1, first_below)
    hidden = rows["hidden_dim"].to_numpy()
    per_dim = []
    for dim in np.unique(hidden):
        mine = (hidden == dim) & known
        n, n_beat = int(mine.sum()), int((mine & ~censored).sum())
        ranked = np.where(censored[mine], math.inf, values[mine])  # "never" sorts last
        median = float(np.median(ranked)) if n else math.nan
        per_dim.append({"hidden_dim": int(dim), "n": n, "n_beat": n_beat,
                        "median": median, "share": rate_interval(n_beat, n)})  # fmt: skip
    return {"per_dim": per_dim, "n_censored": int(censored.sum()),
            "n_unknown": int((~known).sum()), "trend": trend(rows, values)[0]}  # fmt: skip


def _secondary(scan: Scan, rows: pd.DataFrame, question1: dict[str, Any]) -> dict[str, Any]:
    per_model = scan.per_model
    assert per_model is not None
    length = int(rows["epochs"].max())
    kept = per_model.epochs <= length
    positions = rows.index.to_numpy()  # the models frame has a RangeIndex: index = position
    first_below = rows["_first_below"].to_numpy(np.float64)
    out: dict[str, Any] = {"epochs": length, "baseline_loss": question1["baseline_loss"],
                           "n_splits": question1["n_splits"], "rules": []}  # fmt: skip
    for name, label, mine in rules_of(rows):
        subset, loss = rows[mine], per_model.loss[positions[mine]]
        by_epoch = _slopes(subset, loss[:, kept])
        curve = {key: [s[key] for s in by_epoch] for key in ("mean", "low", "high", "n_blocks")}
        out["rules"].append({
            "optimizer": name, "label": label,
            "first_beating": _first_beating(subset, first_below[mine]),
            "slope_by_epoch": {"epoch": [int(e) for e in per_model.epochs[kept]], **curve},
        })  # fmt: skip
    return out


def answer_numbers(scan: Scan) -> dict[str, Any]:
    """All the numbers behind the answers, per setting."""
    models, epoch = scan.models, scan.epoch
    # counted as the outcome lines count them: manual's rows repeating sgd's (`sgd = manual`)
    # are one configuration, counted once
    shown = ~models["_duplicate"].to_numpy(bool)
    outcome = models["_outcome"].astype(object).to_numpy()[shown]
    numbers: dict[str, Any] = {
        "epoch": epoch, "n_models": int(shown.sum()), "counted_once": bool((~shown).any()),
        "n_diverged": int((outcome == "diverged").sum()),
        "n_unknown": int((outcome == "unknown").sum()), "settings": [],
    }  # fmt: skip
    for setting, rows in settings_of(models):
        used, question1 = int(min(epoch, int(setting["epochs"]))), _question1(scan, rows)
        numbers["settings"].append({
            "setting": setting, "epoch": used, "question1": question1,
            "question2": _question2(rows, used), "secondary": _secondary(scan, rows, question1),
        })  # fmt: skip
    return numbers

"""The numbers behind the notebook's two questions, per setting, and the `Answers` they make."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .reference import rule_check
from .scan import Scan
from .settings import CONVERGED, DIVERGED, optimizer_order, settings_of
from .statistics import (
    ACCURACY_BOUNDS,
    UNBOUNDED,
    Interval,
    block_matrix,
    complete_blocks,
    crossed_interval,
    fall_test,
    rate_interval,
    seed_slopes,
    theil_sen_slopes,
)
from .summary import outcome_counts, rules_label


@dataclass
class Answers:
    """The two questions' answers in words, the `numbers` behind them, notes and warnings.

    `warnings` are lines the report shows first and marked: a rule whose engine no longer
    reproduces the notebook's loop.
    """

    question1: str
    question2: str
    numbers: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    headline: list[str] = field(default_factory=list)  # both answers in a few lines, first
    secondary: list[str] = field(default_factory=list)  # pre-specified, beyond the notebook


def _interval(interval: Interval) -> dict[str, Any]:
    return {"n": interval.n, "n_splits": interval.n_splits, "mean": interval.mean,
            "median": interval.median, "low": interval.low, "high": interval.high,
            "method": interval.method, "se": interval.se, "covers": interval.covers()}  # fmt: skip


def _per_block(rows: pd.DataFrame, values: np.ndarray) -> np.ndarray:
    """Per (split, seed) block, the mean of `values` over its hidden_dims (splits x seeds)."""
    frame = pd.DataFrame({"split": rows["split_seed"].to_numpy(), "seed": rows["seed"].to_numpy(),
                          "value": values})  # fmt: skip
    means = frame.groupby(["split", "seed"], sort=True)["value"].mean()
    keys = means.index.to_frame(index=False)
    return block_matrix(keys["split"].to_numpy(), keys["seed"].to_numpy(), means.to_numpy())[2]


def _over_blocks(rows: pd.DataFrame, values: np.ndarray, bounds: tuple[float, float]) -> dict:
    return _interval(crossed_interval(_per_block(rows, values), bounds))


def _question1(scan: Scan, rows: pd.DataFrame) -> dict[str, Any]:
    """Question 1 for one setting: outcomes and accuracy per rule over every model; the check."""
    held_out = bool(rows["test_size"].iloc[0] > 0) and rows["test_accuracy"].notna().any()
    part = "test" if held_out else "train"
    duplicate = rows["_duplicate"].to_numpy(bool)
    outcome = rows["_outcome"].astype(object).to_numpy()
    baselines = rows.groupby("split_seed")["baseline_loss"].first().to_numpy(np.float64)
    numbers: dict[str, Any] = {
        "accuracy_part": part,
        "majority_accuracy": float(np.nanmedian(rows[f"_majority_{part}"].to_numpy(np.float64))),
        "baseline_loss": float(np.nanmedian(baselines)) if len(baselines) else math.nan,
        "baseline_range": (float(np.nanmin(baselines)), float(np.nanmax(baselines)))
        if np.isfinite(baselines).any() else (math.nan, math.nan),
        "n_splits": int(rows["split_seed"].nunique()),
        "manual_repeats_sgd": bool(duplicate.any()),
        "engines": sorted({str(e) for e in rows["engine"].dropna().unique()}),
        "rules": {},
        "against_sgd": {},
    }  # fmt: skip
    accuracy = rows[f"{part}_accuracy"].to_numpy(np.float64)
    above = accuracy > rows[f"_majority_{part}"].to_numpy(np.float64) + 1e-12
    final = rows["final_train_loss"].to_numpy(np.float64)
    converged = outcome == CONVERGED
    optimizer = rows["optimizer"].astype(str).to_numpy()
    shown = optimizer_order(optimizer[~duplicate].tolist())
    for name in shown:
        mine = (optimizer == name) & ~duplicate
        subset = rows[mine]
        n_above = int(above[mine].sum())
        numbers["rules"][name] = {
            "label": rules_label(name, numbers["manual_repeats_sgd"]),
            "n_models": int(mine.sum()),
            "n_seeds": int(subset["seed"].nunique()),
            **outcome_counts(outcome[mine]),
            "accuracy_median": float(np.nanmedian(accuracy[mine])) if mine.any() else math.nan,
            "n_above_majority": n_above,
            "above_majority": rate_interval(n_above, int(mine.sum())),
            "accuracy": _over_blocks(subset, accuracy[mine], ACCURACY_BOUNDS),
            "accuracy_converged": _over_blocks(
                subset, np.where(converged[mine], accuracy[mine], np.nan), ACCURACY_BOUNDS
            ),
            "final_loss_median": float(np.nanmedian(final[mine])) if mine.any() else math.nan,
        }
    frame = rows.assign(_a=accuracy, _f=final)
    sgd = frame[optimizer == "sgd"]
    for name in shown:
        if name == "sgd" or sgd.empty:
            continue
        keys = ["hidden_dim", "split_seed", "seed"]
        pairs = frame[optimizer == name].merge(sgd, on=keys, suffixes=("", "_sgd"))
        if pairs.empty:
            continue
        differences = {}
        for key, column, bounds in (("accuracy", "_a", (-1.0, 1.0)),
                                    ("final_loss", "_f", UNBOUNDED)):  # fmt: skip
            paired = pairs[column].to_numpy(np.float64) - pairs[f"{column}_sgd"].to_numpy()
            differences[key] = _over_blocks(pairs, paired, bounds)
        numbers["against_sgd"][name] = {"n_pairs": len(pairs), **differences}
    numbers["reference"] = rule_check(scan, rows)
    recorded = rows["reference_checked"].notna().any()
    numbers["reference_missing"] = None if numbers["reference"] is not None else (
        "written by an older version" if not recorded else "no model was checked"
    )  # fmt: skip
    return numbers


def _blocks(rows: pd.DataFrame) -> np.ndarray:
    """Each row's block: its (split seed, seed) pair as one integer code."""
    pairs = pd.MultiIndex.from_arrays([rows["split_seed"].to_numpy(), rows["seed"].to_numpy()])
    return pd.factorize(pairs)[0]


def trend(rows: pd.DataFrame, values: np.ndarray) -> dict[str, Any]:
    """The blocked fall of `values` with hidden_dim: test, mean and Theil-Sen slopes, power.

    Blocks are (split, seed) pairs with a finite value at every hidden_dim; a value is left out
    only where it is not finite itself.
    """
    codes = _blocks(rows)
    split_of = rows["split_seed"].to_numpy()
    seed_of = rows["seed"].to_numpy()
    hidden = rows["hidden_dim"].to_numpy()
    blocks, dims, matrix = complete_blocks(codes, hidden, values)
    test, p = fall_test(matrix)
    first = {code: i for i, code in reversed(list(enumerate(codes)))}
    where = np.array([first[b] for b in blocks], dtype=np.int64)
    split_ids, seed_ids = split_of[where], seed_of[where]
    result: dict[str, Any] = {"test": test, "p_value": p, "n_blocks": int(len(blocks)),
                              "dims": [int(d) for d in dims], "matrix": matrix}  # fmt: skip
    if len(dims) > 1 and len(blocks):
        slopes = seed_slopes(matrix, dims)
        robust = theil_sen_slopes(matrix, dims)
        result["slope"] = _interval(crossed_interval(block_matrix(split_ids, seed_ids, slopes)[2]))
        result["theil_sen"] = _interval(
            crossed_interval(block_matrix(split_ids, seed_ids, robust)[2], statistic="median")
        )
        result["slope_sd"] = float(np.std(slopes, ddof=1)) if len(slopes) > 1 else math.nan
    else:
        empty = _interval(crossed_interval(np.empty((0, 0))))
        result.update(slope=empty, theil_sen=empty, slope_sd=math.nan)
    se = result["slope"]["se"]
    # a two-sided 5% test has 80% power against a true slope of (1.96 + 0.84) standard errors
    result["detectable"] = 2.8 * se if math.isfinite(se) else math.nan
    low, high = result["slope"]["low"], result["slope"]["high"]
    result["half_width"] = (
        (high - low) / 2 if math.isfinite(low) and math.isfinite(high) else math.nan
    )
    return result


def _question2(rows: pd.DataFrame, epoch: int) -> list[dict[str, Any]]:
    """Question 2 for one setting: per rule, the fall of loss@epoch with hidden_dim, by block."""
    results = []
    duplicate = rows["_duplicate"].to_numpy(bool)
    loss_all = rows["_loss"].to_numpy(np.float64)
    optimizer = rows["optimizer"].astype(str).to_numpy()
    for name in optimizer_order(optimizer[~duplicate].tolist()):
        mine = (optimizer == name) & ~duplicate
        subset, loss = rows[mine], loss_all[mine]
        found = trend(subset, loss)
        matrix = found.pop("matrix")
        hidden = subset["hidden_dim"].to_numpy()
        medians = [
            {"hidden_dim": int(d),
             "median": float(np.median(matrix[:, j])) if len(matrix) else math.nan,
             "n_left_out": int((~np.isfinite(loss[hidden == d])).sum())}
            for j, d in enumerate(found["dims"])
        ]  # fmt: skip
        results.append({
            "optimizer": name,
            "label": rules_label(name, bool(duplicate.any())),
            "epoch": epoch,
            "n_seeds": int(subset["seed"].nunique()),
            "n_splits": int(subset["split_seed"].nunique()),
            "medians": medians,
            "n_left_out": int((~np.isfinite(loss)).sum()),
            "n_models": int(mine.sum()),
            **found,
        })  # fmt: skip
    return results


def answer_numbers(scan: Scan) -> dict[str, Any]:
    """All the numbers behind the answers, per setting."""
    models, epoch = scan.models, scan.epoch
    # counted as the outcome lines count them: manual's rows repeating sgd's (`sgd = manual`)
    # are one configuration, counted once
    shown = ~models["_duplicate"].to_numpy(bool)
    outcome = models["_outcome"].astype(object).to_numpy()[shown]
    numbers: dict[str, Any] = {
        "epoch": epoch,
        "n_models": int(shown.sum()),
        "counted_once": bool((~shown).any()),
        "n_diverged": int((outcome == DIVERGED).sum()),
        "n_unknown": int((outcome == "unknown").sum()),
        "settings": [],
    }
    for setting, rows in settings_of(models):
        used = int(min(epoch, int(setting["epochs"])))
        numbers["settings"].append({
            "setting": setting,
            "epoch": used,
            "question1": _question1(scan, rows),
            "question2": _question2(rows, used),
        })  # fmt: skip
    return numbers

"""The numbers behind the notebook's two questions, per setting, and the `Answers` they make."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .reference import rule_check
from .scan import Scan
from .settings import DIVERGED, optimizer_order, settings_of
from .statistics import (
    ACCURACY_BOUNDS,
    LOSS_BOUNDS,
    UNBOUNDED,
    Interval,
    complete_blocks,
    fall_test,
    mean_interval,
    seed_slopes,
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


def _interval(interval: Interval) -> dict[str, Any]:
    return {"n": interval.n, "mean": interval.mean, "median": interval.median,
            "low": interval.low, "high": interval.high, "method": interval.method}  # fmt: skip


def _per_seed(rows: pd.DataFrame, values: np.ndarray) -> np.ndarray:
    """Per seed, the mean of `values` over its hidden_dims (NaNs left out): one number a seed."""
    frame = pd.DataFrame({"seed": rows["seed"].to_numpy(), "value": values})
    return frame.groupby("seed", sort=True)["value"].mean().to_numpy(np.float64)


def _question1(scan: Scan, rows: pd.DataFrame) -> dict[str, Any]:
    """Question 1 for one setting: outcomes and accuracy per rule, by seed; the rules compared."""
    held_out = bool(rows["test_size"].iloc[0] > 0) and rows["test_accuracy"].notna().any()
    part = "test" if held_out else "train"
    duplicate = rows["_duplicate"].to_numpy(bool)
    outcome = rows["_outcome"].astype(object).to_numpy()
    numbers: dict[str, Any] = {
        "accuracy_part": part,
        "majority_accuracy": float(rows[f"_majority_{part}"].iloc[0]),
        "baseline_loss": float(rows["baseline_loss"].iloc[0]),
        "manual_repeats_sgd": bool(duplicate.any()),
        "engines": sorted({str(e) for e in rows["engine"].dropna().unique()}),
        "rules": {},
        "against_sgd": {},
    }
    ok = outcome != DIVERGED
    accuracy = np.where(ok, rows[f"{part}_accuracy"].to_numpy(np.float64), np.nan)
    final = np.where(ok, rows["final_train_loss"].to_numpy(np.float64), np.nan)
    optimizer = rows["optimizer"].astype(str).to_numpy()
    shown = optimizer_order(optimizer[~duplicate].tolist())
    for name in shown:
        mine = (optimizer == name) & ~duplicate
        subset = rows[mine]
        numbers["rules"][name] = {
            "label": rules_label(name, numbers["manual_repeats_sgd"]),
            "n_models": int(mine.sum()),
            "n_seeds": int(subset["seed"].nunique()),
            **outcome_counts(outcome[mine]),
            "accuracy": _interval(
                mean_interval(_per_seed(subset, accuracy[mine]), ACCURACY_BOUNDS)
            ),  # fmt: skip
            "final_loss": _interval(mean_interval(_per_seed(subset, final[mine]), LOSS_BOUNDS)),
        }
    sgd = rows[(optimizer == "sgd")].assign(_a=accuracy[optimizer == "sgd"],
                                              _f=final[optimizer == "sgd"])  # fmt: skip
    for name in shown:
        if name == "sgd" or sgd.empty:
            continue
        mine = rows[(optimizer == name)].assign(_a=accuracy[optimizer == name],
                                                  _f=final[optimizer == name])  # fmt: skip
        pairs = mine.merge(sgd, on=["hidden_dim", "seed"], suffixes=("", "_sgd"))
        if pairs.empty:
            continue
        differences, used = {}, 0
        for key, column, bounds in (("accuracy", "_a", (-1.0, 1.0)),
                                    ("final_loss", "_f", UNBOUNDED)):  # fmt: skip
            paired = pairs[column].to_numpy(np.float64) - pairs[f"{column}_sgd"].to_numpy()
            differences[key] = _interval(mean_interval(_per_seed(pairs, paired), bounds))
            used = max(used, int(np.isfinite(paired).sum()))
        # the pairs used: those where neither model diverged (a diverged one is NaN here)
        numbers["against_sgd"][name] = {"n_pairs": used, **differences}
    numbers["reference"] = rule_check(scan, rows)
    recorded = rows["reference_checked"].notna().any()
    numbers["reference_missing"] = None if numbers["reference"] is not None else (
        "written by an older version" if not recorded else "no model was checked"
    )  # fmt: skip
    return numbers


def _question2(rows: pd.DataFrame, epoch: int) -> list[dict[str, Any]]:
    """Question 2 for one setting: per rule, the fall of loss@epoch with hidden_dim, by seed."""
    results = []
    duplicate = rows["_duplicate"].to_numpy(bool)
    outcome = rows["_outcome"].astype(object).to_numpy()
    loss_all = np.where(outcome != DIVERGED, rows["_loss"].to_numpy(np.float64), np.nan)
    optimizer = rows["optimizer"].astype(str).to_numpy()
    for name in optimizer_order(optimizer[~duplicate].tolist()):
        mine = (optimizer == name) & ~duplicate
        hidden, seeds, loss = (rows["hidden_dim"].to_numpy()[mine],
                               rows["seed"].to_numpy()[mine], loss_all[mine])  # fmt: skip
        blocks, dims, matrix = complete_blocks(seeds, hidden, loss)
        test, p = fall_test(matrix)
        slope = mean_interval(seed_slopes(matrix, dims) if len(dims) > 1 else [], UNBOUNDED)
        # the medians are over the tested seeds only (the complete blocks), as the test is
        medians = [
            {"hidden_dim": int(d),
             "median": float(np.median(matrix[:, j])) if len(matrix) else math.nan,
             "n_diverged": int((outcome[mine][hidden == d] == DIVERGED).sum())}
            for j, d in enumerate(dims)
        ]  # fmt: skip
        results.append({
            "optimizer": name,
            "label": rules_label(name, bool(duplicate.any())),
            "epoch": epoch,
            "dims": [int(d) for d in np.unique(hidden)],
            "n_seeds": int(len(np.unique(seeds))),
            "n_blocks": int(len(blocks)),
            "test": test,
            "p_value": p,
            "slope": _interval(slope),
            "medians": medians,
            "n_diverged": int((outcome[mine] == DIVERGED).sum()),
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

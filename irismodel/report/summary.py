"""The summary per configuration: outcomes with Wilson rates, medians, means with intervals."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .settings import (
    CONVERGED,
    DIVERGED,
    OSCILLATING,
    SETTING_COLUMNS,
    STALLED,
    UNKNOWN,
    optimizer_order,
    varying_settings,
)
from .statistics import (
    ACCURACY_BOUNDS,
    LOSS_BOUNDS,
    block_matrix,
    crossed_interval,
    rate_interval,
)

# (summary name, models column, bounds): the quantities summarised over seeds
QUANTITIES = (
    ("loss_at_epoch", "_loss", LOSS_BOUNDS),
    ("final_loss", "final_train_loss", LOSS_BOUNDS),
    ("train_accuracy", "train_accuracy", ACCURACY_BOUNDS),
    ("test_accuracy", "test_accuracy", ACCURACY_BOUNDS),
)


def rules_label(optimizer: str, merged: bool) -> str:
    """The name a configuration is shown under: `sgd = manual` when manual repeated sgd's rows."""
    return "sgd = manual" if merged and optimizer == "sgd" else optimizer


def outcome_counts(outcome: np.ndarray) -> dict[str, Any]:
    """Counts of each outcome and the Wilson rates of stalled and diverged models."""
    n = len(outcome)
    counts = {name: int(np.count_nonzero(outcome == name)) for name in
              (CONVERGED, STALLED, OSCILLATING, DIVERGED, UNKNOWN)}  # fmt: skip
    record: dict[str, Any] = {f"n_{name}": count for name, count in counts.items()}
    for name in (STALLED, OSCILLATING, DIVERGED):
        rate, low, high = rate_interval(counts[name], n)
        if name == STALLED and counts[UNKNOWN]:  # older rows: stalled cannot be told
            rate, low, high = math.nan, math.nan, math.nan
        record.update({f"{name}_rate": rate, f"{name}_low": low, f"{name}_high": high})
    return record


def merged_settings(models: pd.DataFrame) -> set[tuple]:
    """The settings (as tuples of SETTING_COLUMNS) whose manual rows repeat sgd's."""
    merged = models.loc[models["_duplicate"].to_numpy(bool), list(SETTING_COLUMNS)]
    return set(merged.drop_duplicates().itertuples(index=False, name=None))


def summarize_models(models: pd.DataFrame) -> pd.DataFrame:
    """The summary of scanned models (see `summarize`)."""
    keys = [*varying_settings(models), "hidden_dim", "optimizer"]
    shown = models[~models["_duplicate"].to_numpy(bool)]
    merged = merged_settings(models)

    def record_of(values: tuple, rows: pd.DataFrame) -> dict[str, Any]:
        record: dict[str, Any] = dict(zip(keys, values, strict=True))
        setting = tuple(rows[list(SETTING_COLUMNS)].iloc[0])
        record["rules"] = rules_label(str(record["optimizer"]), setting in merged)
        outcome = rows["_outcome"].astype(object).to_numpy()
        record["n_seeds"] = len(rows)
        record.update(outcome_counts(outcome))
        record["epoch"] = int(rows["_epoch"].iloc[0])
        splits, seeds = rows["split_seed"].to_numpy(), rows["seed"].to_numpy()
        record["n_splits"] = int(len(np.unique(splits)))
        for name, column, bounds in QUANTITIES:
            # every model, diverged ones too (a non-finite value is left out only where it is)
            values = rows[column].to_numpy(np.float64)
            interval = crossed_interval(block_matrix(splits, seeds, values)[2], bounds)
            record.update({f"{name}_median": interval.median, f"{name}_mean": interval.mean,
                           f"{name}_low": interval.low, f"{name}_high": interval.high})  # fmt: skip
        record["held_out"] = bool(rows["test_size"].iloc[0] > 0) and bool(
            rows["test_accuracy"].notna().any()
        )
        record["train_majority_accuracy"] = float(rows["_majority_train"].iloc[0])
        record["baseline_loss"] = float(rows["baseline_loss"].iloc[0])
        return record

    groups = shown.groupby(keys, sort=True, dropna=False, observed=True)
    records = [record_of(values, rows) for values, rows in groups]
    summary = pd.DataFrame.from_records(records)
    order = optimizer_order(summary["optimizer"])
    summary["_order"] = summary["optimizer"].map(order.index)
    summary = summary.sort_values([*keys[:-2], "hidden_dim", "_order"], kind="stable")
    return summary.drop(columns="_order").reset_index(drop=True)


def _number(value: float, digits: int = 4) -> float | None:
    return round(float(value), digits) if math.isfinite(value) else None


def summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Return the summary as a table of numbers: one column per number, so that it sorts.

    Rates are shares of the configuration's models with their Wilson 95% interval; medians,
    means and 95% bootstrap intervals are over every model with a finite value, over seeds and
    splits. Missing numbers are None.
    """
    settings = [c for c in SETTING_COLUMNS if c in summary.columns]
    rows = []
    for record in summary.to_dict("records"):
        epoch = record["epoch"]
        row: dict[str, Any] = {c: record[c] for c in settings}
        if "data_fingerprint" in row:
            row["data_fingerprint"] = str(row["data_fingerprint"])[:8]
        row["hidden_dim"] = int(record["hidden_dim"])
        row["optimizer"] = record["rules"]
        row["seeds"] = int(record["n_seeds"])
        for name in (CONVERGED, STALLED, OSCILLATING, DIVERGED):
            row[name] = int(record[f"n_{name}"])
        if record[f"n_{UNKNOWN}"]:
            row["outcome unknown"] = int(record[f"n_{UNKNOWN}"])
        for name in (STALLED, DIVERGED):
            for part in ("rate", "low", "high"):
                row[f"{name} {part}"] = _number(record[f"{name}_{part}"])
        for name, label in (("loss_at_epoch", f"loss@{epoch}"), ("test_accuracy", "test acc"),
                            ("final_loss", "final loss")):  # fmt: skip
            for part in ("median", "mean", "low", "high"):
                row[f"{label} {part}"] = _number(record[f"{name}_{part}"])
        rows.append(row)
    return pd.DataFrame(rows)


def interval_text(mean: float, low: float, high: float, digits: int = 3) -> str:
    """`mean [low, high]`, `mean (one seed, no interval)` or `n/a`."""
    if not math.isfinite(mean):
        return "n/a"
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{mean:.{digits}f} (one seed, no interval)"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _percent(share: float) -> str:
    """A share as a percentage: whole percents, or two significant digits below 1%."""
    return f"{share:.0%}" if share == 0 or share >= 0.01 else f"{100 * share:.2g}%"


def rate_text(rate: float, low: float, high: float) -> str:
    """`12% [5%, 25%]`, or `unknown`."""
    if not math.isfinite(rate):
        return "unknown"
    return f"{_percent(rate)} [{_percent(low)}, {_percent(high)}]"


def summary_text_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Return the summary as a table of short strings, for the terminal and the markdown."""
    settings = [c for c in SETTING_COLUMNS if c in summary.columns]
    held_out = summary["held_out"].to_numpy(bool) if "held_out" in summary else None
    # with no test rows (test_size=0) the accuracy is the training rows', as in the text:
    # the column says so, or, beside held-out rows, each such value is marked "(train)"
    accuracy = "test acc" if held_out is None or held_out.any() else "train acc (not held out)"
    rows = []
    for record in summary.to_dict("records"):
        epoch = record["epoch"]
        train = not record.get("held_out", True)
        row: dict[str, Any] = {}
        for column in settings:
            value = record[column]
            row[column] = str(value)[:8] if column == "data_fingerprint" else (
                f"{value:g}" if isinstance(value, float) else value
            )  # fmt: skip
        row["hidden_dim"] = int(record["hidden_dim"])
        row["optimizer"] = record["rules"]
        unknown, n = record[f"n_{UNKNOWN}"], record["n_seeds"]
        row["models: conv/stall/osc/div"] = (
            f"{n}: ?/?/?/{record['n_diverged']} ({unknown} unknown)"
            if unknown
            else f"{n}: {record['n_converged']}/{record['n_stalled']}/"
            f"{record['n_oscillating']}/{record['n_diverged']}"
        )
        row["stalled [95%]"] = rate_text(record["stalled_rate"], record["stalled_low"],
                                         record["stalled_high"])  # fmt: skip
        quantity = "train_accuracy" if train else "test_accuracy"
        mark = " (train)" if train and accuracy == "test acc" else ""
        for name, label in (("loss_at_epoch", f"loss@{epoch}"), (quantity, accuracy)):
            median = record[f"{name}_median"]
            row[f"{label} median"] = "n/a" if not math.isfinite(median) else f"{median:.3f}"
            row[f"{label} mean [95%]"] = interval_text(
                record[f"{name}_mean"], record[f"{name}_low"], record[f"{name}_high"]
            )
            if name == quantity and math.isfinite(median):
                row[f"{label} median"] += mark
        rows.append(row)
    return pd.DataFrame(rows)

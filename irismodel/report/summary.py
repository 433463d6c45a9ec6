"""The summary per configuration: outcomes with Wilson rates, medians, means with intervals."""

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from .settings import ALL_OUTCOMES, SETTING_COLUMNS, optimizer_order, varying_settings
from .statistics import ACCURACY_BOUNDS, LOSS_BOUNDS, block_matrix, crossed_intervals, rate_interval
from .text import interval_text, no_number, rate_of

_PARTS = ("median", "mean", "low", "high")
# (summary name, models column, bounds): the quantities summarised over seeds
QUANTITIES = (
    ("loss_at_epoch", "_loss", LOSS_BOUNDS),
    ("final_loss", "final_train_loss", LOSS_BOUNDS),
    ("train_accuracy", "train_accuracy", ACCURACY_BOUNDS),
    ("test_accuracy", "test_accuracy", ACCURACY_BOUNDS),
)


def outcome_counts(outcome: np.ndarray) -> dict[str, Any]:
    """Counts of each outcome and the Wilson rates of stalled, oscillating and diverged models."""
    counts = {name: int(np.count_nonzero(outcome == name)) for name in ALL_OUTCOMES}
    record: dict[str, Any] = {f"n_{name}": count for name, count in counts.items()}
    for name in ("stalled", "oscillating", "diverged"):
        rate, low, high = rate_interval(counts[name], len(outcome))
        if name == "stalled" and counts["unknown"]:  # older rows: stalled cannot be told
            rate, low, high = math.nan, math.nan, math.nan
        record.update({f"{name}_rate": rate, f"{name}_low": low, f"{name}_high": high})
    return record


def summarize_models(models: pd.DataFrame) -> pd.DataFrame:
    """The summary of scanned models (see `build.summarize`)."""
    keys = [*varying_settings(models), "hidden_dim", "optimizer"]
    shown = models[~models["_duplicate"].to_numpy(bool)]

    def record_of(values: tuple, rows: pd.DataFrame) -> dict[str, Any]:
        first = rows.iloc[0]
        record: dict[str, Any] = dict(zip(keys, values, strict=True))
        record["rules"] = str(first["_rule"])
        record["n_seeds"] = len(rows)
        record.update(outcome_counts(rows["_outcome"].astype(object).to_numpy()))
        record["epoch"] = int(first["_epoch"])
        splits, seeds = rows["split_seed"].to_numpy(), rows["seed"].to_numpy()
        record["n_splits"] = int(len(np.unique(splits)))
        # every model, diverged ones too (a non-finite value is left out only where it is)
        for _, column, _ in QUANTITIES:
            matrices.append(block_matrix(splits, seeds, rows[column].to_numpy(np.float64))[2])
        record["held_out"] = bool(first["test_size"] > 0 and rows["test_accuracy"].notna().any())
        record["train_majority_accuracy"] = float(first["_majority_train"])
        record["baseline_loss"] = float(first["baseline_loss"])
        return record

    matrices: list[np.ndarray] = []  # each configuration's QUANTITIES, in order
    groups = shown.groupby(keys, sort=True, dropna=False, observed=True)
    records = [record_of(values, rows) for values, rows in groups]
    # one call: configurations over the same seeds share their resamples
    intervals = iter(crossed_intervals(matrices, [b for _, _, b in QUANTITIES] * len(records)))
    for record in records:
        for name, _, _ in QUANTITIES:
            interval = next(intervals)
            record.update({f"{name}_{k}": getattr(interval, k) for k in _PARTS})
    summary = pd.DataFrame.from_records(records)
    summary["_order"] = summary["optimizer"].map(optimizer_order(summary["optimizer"]).index)
    summary = summary.sort_values([*keys[:-2], "hidden_dim", "_order"], kind="stable")
    return summary.drop(columns="_order").reset_index(drop=True)


def _table(summary: pd.DataFrame, text: bool, cells: Callable[[dict], dict]) -> pd.DataFrame:
    """A row per configuration: the settings that vary, hidden_dim, the rule's name, `cells`."""
    settings = [c for c in SETTING_COLUMNS if c in summary.columns]
    rows = []
    for record in summary.to_dict("records"):
        row = {c: record[c] for c in settings}
        for column, value in row.items():
            if column == "data_fingerprint":
                row[column] = str(value)[:8]
            elif text and isinstance(value, float):
                row[column] = f"{value:g}"
        head = {"hidden_dim": int(record["hidden_dim"]), "optimizer": record["rules"]}
        rows.append({**row, **head, **cells(record)})
    return pd.DataFrame(rows)


def _number(value: float) -> float | None:
    return round(float(value), 4) if math.isfinite(value) else None


def summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Return the summary as a table of numbers: one column per number, so that it sorts.

    Rates with their Wilson 95% interval, means with their bootstrap one; missing numbers None.
    """

    def cells(record: dict) -> dict:
        row = {"seeds": int(record["n_seeds"])}
        row |= {name: int(record[f"n_{name}"]) for name in ALL_OUTCOMES if name != "unknown"}
        if record["n_unknown"]:
            row["outcome unknown"] = int(record["n_unknown"])
        for name, label in (("stalled", "stalled"), ("diverged", "diverged"),
                            ("loss_at_epoch", f"loss@{record['epoch']}"),
                            ("test_accuracy", "test acc"),
                            ("final_loss", "final loss")):  # fmt: skip
            parts = ("rate", "low", "high") if name == label else _PARTS
            row |= {f"{label} {part}": _number(record[f"{name}_{part}"]) for part in parts}
        return row

    return _table(summary, False, cells)


def summary_text_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Return the summary as a table of short strings, for the terminal and the markdown."""
    # with no test rows (test_size=0) the accuracy is the training rows', as in the text:
    # the column says so, or, beside held-out rows, each such value is marked "(train)"
    accuracy = "test acc" if summary["held_out"].any() else "train acc (not held out)"

    def cells(record: dict) -> dict:
        unknown, n, train = record["n_unknown"], record["n_seeds"], not record["held_out"]
        row = {"models: conv/stall/osc/div": (
            f"{n}: ?/?/?/{record['n_diverged']} ({unknown} unknown)" if unknown
            else f"{n}: {record['n_converged']}/{record['n_stalled']}/"
            f"{record['n_oscillating']}/{record['n_diverged']}"
        )}  # fmt: skip
        row["stalled [95%]"] = rate_of(record, "stalled")
        quantity = "train_accuracy" if train else "test_accuracy"
        mark = " (train)" if train and accuracy == "test acc" else ""
        for name, label in (("loss_at_epoch", f"loss@{record['epoch']}"), (quantity, accuracy)):
            median, mean, low, high = (record[f"{name}_{part}"] for part in _PARTS)
            row[f"{label} median"] = no_number(median)
            row[f"{label} mean [95%]"] = interval_text(mean, low, high)
            if name == quantity and math.isfinite(median):
                row[f"{label} median"] += mark
        return row

    return _table(summary, True, cells)

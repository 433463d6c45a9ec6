"""Beyond the notebook's question, fixed in advance: beating the baseline, slope by epoch.

When models first beat the linear baseline, and where in training the hidden layer's size
matters (the blocked slope of the loss on hidden_dim by epoch, plotted).

Both are pre-specified secondary summaries, not searched for: the first epoch whose training
loss falls below `baseline_loss` (a logistic regression's loss on the same training rows), and
the mean per-(split, seed) slope of the loss on hidden_dim at the log-spaced epochs every model's
loss is kept at (`curves.slope_epochs`). A model that never beats the baseline is censored at
its run's epochs: it counts as epoch `epochs + 1`, ranked after every model that did, never
dropped. Tests and intervals are question 2's: Page's L blocked by (split, seed), per-block
slopes with the two-level bootstrap over splits and seeds.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .answers import trend
from .plots import _figure, _legend, colours, fitted, save_png
from .rendering import plot_text, run_title
from .scan import Scan
from .settings import optimizer_order, settings_of
from .statistics import block_matrix, complete_blocks, crossed_interval, rate_interval, seed_slopes
from .summary import rules_label

SECONDARY = "beyond the notebook's question (pre-specified secondary summary)"


def _block_slopes(rows: pd.DataFrame, values: np.ndarray) -> dict[str, Any]:
    """The mean per-(split, seed) least-squares slope of `values` on hidden_dim and its interval.

    As question 2's `slope`: blocks with a finite value at every hidden_dim, the two-level
    bootstrap over splits and seeds.
    """
    pairs = pd.MultiIndex.from_arrays([rows["split_seed"].to_numpy(), rows["seed"].to_numpy()])
    codes = pd.factorize(pairs)[0]
    blocks, dims, matrix = complete_blocks(codes, rows["hidden_dim"].to_numpy(), values)
    if len(dims) < 2 or not len(blocks):
        return {"n_blocks": int(len(blocks)), "mean": math.nan, "low": math.nan, "high": math.nan}
    first = np.unique(codes, return_index=True)[1]  # codes are 0..k-1: row of each code's first
    where = first[blocks]
    slopes = seed_slopes(matrix, dims)
    cells = block_matrix(rows["split_seed"].to_numpy()[where], rows["seed"].to_numpy()[where],
                         slopes)[2]  # fmt: skip
    interval = crossed_interval(cells)
    return {"n_blocks": int(len(blocks)), "mean": interval.mean, "low": interval.low,
            "high": interval.high}  # fmt: skip


def _first_beating(rows: pd.DataFrame, first_below: np.ndarray) -> dict[str, Any]:
    """The first epoch below the baseline: per hidden_dim, and its blocked fall with it.

    Per hidden_dim the median first epoch (censored models last) and the share that ever got
    there; the trend test counts a censored model as epochs + 1.
    """
    epochs = rows["epochs"].to_numpy(np.float64)
    known = np.isfinite(first_below)
    censored = known & (first_below == 0)
    # censored at the run's length: after every model that beat the baseline within it
    values = np.where(censored, epochs + 1, first_below)
    hidden = rows["hidden_dim"].to_numpy()
    per_dim = []
    for dim in np.unique(hidden):
        mine = (hidden == dim) & known
        n, n_beat = int(mine.sum()), int((mine & ~censored).sum())
        ranked = np.where(censored[mine], math.inf, values[mine])  # "never" sorts last
        median = float(np.median(ranked)) if n else math.nan
        per_dim.append({"hidden_dim": int(dim), "n": n, "n_beat": n_beat,
                        "median": median, "share": rate_interval(n_beat, n)})  # fmt: skip
    found = trend(rows, values)
    found.pop("matrix")
    return {"per_dim": per_dim, "n_censored": int(censored.sum()),
            "n_unknown": int((~known).sum()), "trend": found}  # fmt: skip


def secondary_numbers(scan: Scan, rows: pd.DataFrame) -> dict[str, Any]:
    """Both secondary summaries for one setting's rows (as `answer_numbers` splits them)."""
    assert scan.per_model is not None
    per_model = scan.per_model
    length = int(rows["epochs"].max())
    kept = per_model.epochs[per_model.epochs <= length]
    baselines = rows.groupby("split_seed")["baseline_loss"].first().to_numpy(np.float64)
    duplicate = rows["_duplicate"].to_numpy(bool)
    optimizer = rows["optimizer"].astype(str).to_numpy()
    positions = rows.index.to_numpy()  # the models frame has a RangeIndex: index = position
    first_below = rows["_first_below"].to_numpy(np.float64)
    out: dict[str, Any] = {
        "epochs": length,
        "baseline_loss": float(np.nanmedian(baselines)) if np.isfinite(baselines).any()
        else math.nan,
        "n_splits": int(len(baselines)),
        "rules": [],
    }  # fmt: skip
    for name in optimizer_order(optimizer[~duplicate].tolist()):
        mine = (optimizer == name) & ~duplicate
        subset = rows[mine]
        by_epoch = [
            _block_slopes(subset, per_model.loss[positions[mine], j].astype(np.float64))
            for j in np.flatnonzero(per_model.epochs <= length)
        ]
        out["rules"].append({
            "optimizer": name,
            "label": rules_label(name, bool(duplicate.any())),
            "first_beating": _first_beating(subset, first_below[mine]),
            "slope_by_epoch": {
                "epoch": [int(e) for e in kept],
                **{key: [s[key] for s in by_epoch] for key in ("mean", "low", "high", "n_blocks")},
            },
        })  # fmt: skip
    return out


def add_secondary(numbers: dict[str, Any], scan: Scan) -> dict[str, Any]:
    """Add each setting's secondary summaries to `answer_numbers`' numbers; return them."""
    for entry, (_, rows) in zip(numbers["settings"], settings_of(scan.models), strict=True):
        entry["secondary"] = secondary_numbers(scan, rows)
    return numbers


def plot_slope_by_epoch(numbers: dict[str, Any], models: pd.DataFrame, path: str) -> str:
    """The blocked slope of the loss on hidden_dim against the epoch, per rule, with its band."""
    settings = numbers["settings"]
    plt, figure, axes = _figure(len(settings), height=3.6, width=7.5 if len(settings) == 1
                                else 5.2, sharey=False)  # fmt: skip
    names = list(dict.fromkeys(r["label"] for e in settings for r in e["secondary"]["rules"]))
    colour = dict(zip(names, colours(len(names)), strict=True))
    handles: dict[str, Any] = {}
    for axis, entry in zip(axes, settings, strict=False):
        for rule in entry["secondary"]["rules"]:
            curve = rule["slope_by_epoch"]
            x = np.asarray(curve["epoch"])
            mean, low, high = (np.asarray(curve[k], np.float64) for k in ("mean", "low", "high"))
            label = rule["label"]
            (handles[label],) = axis.plot(x, mean, color=colour[label], linewidth=1.3)
            axis.fill_between(x, low, high, color=colour[label], alpha=0.2, lw=0)
        axis.axhline(0, color="black", linewidth=0.8)
        used = entry["epoch"]
        axis.axvline(used, color="grey", linestyle="--", linewidth=1)
        axis.annotate(
            f"epoch {used}", (used, 1), xycoords=("data", "axes fraction"), xytext=(3, -12),
            textcoords="offset points", fontsize=8, color="grey",
        )  # fmt: skip
        if len(settings) > 1:
            setting = entry["setting"]
            axis.set_title(f"learning_rate={setting['learning_rate']:g}, "
                           f"epochs={setting['epochs']}", fontsize=9)  # fmt: skip
        axis.set_xscale("log")
        axis.set_xlabel("epoch")
        axis.set_ylabel("slope of training loss on hidden_dim")
        axis.grid(alpha=0.3)
    for axis in axes[len(settings) :]:
        axis.set_visible(False)
    if handles:
        _legend(figure, list(handles.values()), [plot_text(n) for n in handles], "rule")
    heading = (
        "Where in training hidden_dim matters: mean per-(split, seed) slope of the loss on "
        "hidden_dim (line) and its 95% interval over seeds and splits (band); "
        f"{SECONDARY}"
    )
    figure.suptitle(fitted(figure, heading, run_title(models, plot_text)), fontsize=10)
    return save_png(plt, figure, path)

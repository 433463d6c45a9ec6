"""The report's three plots, as PNG bytes: loss per epoch, accuracy per seed, slope by epoch."""

import io
import math
import textwrap
from typing import Any

import numpy as np
import pandas as pd

from .curves import BAND
from .scan import Scan, rules_of
from .settings import SETTING_COLUMNS, accuracy_part, optimizer_order, settings_of, varying_settings
from .text import SECONDARY, plot_text, run_title

PNG_DPI = 100
# Above this many seeds per hidden_dim and optimizer, points would be an unreadable smear.
BOX_THRESHOLD = 200
# From this many seeds in every curve the band is the 10-90% of seeds; with fewer, percentiles
# of a handful of seeds say little and the band is the range of the seeds.
QUANTILE_BAND_SEEDS = 20
# Okabe and Ito's palette, distinguishable with every common colour-vision deficiency.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


def colours(count: int) -> list[Any]:
    """`count` colours a colour-blind reader tells apart: Okabe-Ito, or viridis past eight."""
    if count <= len(PALETTE):
        return list(PALETTE[:count])
    import matplotlib

    return list(matplotlib.colormaps["viridis"](np.linspace(0, 0.9, count)))


def _figure(n_panels: int, height: float, width: float, sharey: bool = False) -> tuple:
    """A figure of `n_panels` panels, three a line; the axes past them hidden."""
    import matplotlib

    matplotlib.use("Agg", force=False)  # no display: files only
    import matplotlib.pyplot as plt

    columns, lines = min(n_panels, 3), math.ceil(n_panels / min(n_panels, 3))
    figure, axes = plt.subplots(
        lines, columns, figsize=(width * columns, height * lines + 1.2), squeeze=False,
        sharey=sharey, layout="constrained",
    )  # fmt: skip
    axes = axes.ravel()
    for axis in axes[n_panels:]:
        axis.set_visible(False)
    return plt, figure, axes


def png(plt: Any, figure: Any) -> bytes:
    """`figure` as a palette PNG, closed."""
    from PIL import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=PNG_DPI)
    plt.close(figure)
    # A 256-colour palette keeps a plot about a third of its RGBA size, and so the markdown
    # artifact that embeds it; line plots lose nothing visible.
    image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB").quantize(colors=256)
    small = io.BytesIO()
    image.save(small, format="PNG", optimize=True)
    return small.getvalue()


def _finish(plt: Any, figure: Any, heading: str, models: pd.DataFrame) -> bytes:
    """The figure titled, each line wrapped to its width (about 0.6 em a character), as PNG."""
    width = max(20, int(figure.get_figwidth() * 72 / 6.2) - 4)
    lines = (heading, run_title(models, plot_text))
    figure.suptitle("\n".join(textwrap.fill(line, width) for line in lines if line), fontsize=10)
    return png(plt, figure)


def _legend(figure: Any, handles: list, labels: list[str], title: str) -> None:
    """A legend below every panel, in as many columns as fit: it covers no data."""
    figure.legend(handles, labels, title=title, loc="outside lower center", fontsize=8,
                  title_fontsize=8, ncols=min(len(labels), 8), frameon=False)  # fmt: skip


def _label(axis: Any, x: str, y: str | None = None) -> None:
    axis.set_xlabel(x)
    if y:
        axis.set_ylabel(y)
    axis.grid(alpha=0.3)


def _mark_epoch(axis: Any, epoch: int) -> None:
    axis.axvline(epoch, color="grey", linestyle="--", linewidth=1)
    axis.annotate(
        f"epoch {epoch}", (epoch, 1), xycoords=("data", "axes fraction"), xytext=(3, -12),
        textcoords="offset points", fontsize=8, color="grey",
    )  # fmt: skip


def groups_shown(models: pd.DataFrame) -> pd.DataFrame:
    """One row per curve group shown: its setting, hidden_dim, optimizer, rule, diverged."""
    shown = models[~models["_duplicate"].to_numpy(bool)]
    group = shown["_group"].to_numpy()
    table = shown.drop_duplicates("_group")[
        [*SETTING_COLUMNS, "hidden_dim", "optimizer", "_rule", "_group"]
    ].sort_values("_group")
    diverged = pd.Series(group[(shown["_outcome"] == "diverged").to_numpy()]).value_counts()
    table["n_diverged"] = diverged.reindex(table["_group"]).fillna(0).to_numpy(np.int64)
    return table.reset_index(drop=True)


def _title(setting: dict[str, Any], varying: list[str]) -> str:
    return ", ".join(f"{c}={plot_text(setting[c])}" for c in varying if c != "data_fingerprint")


def plot_loss(scan: Scan) -> bytes:
    """The loss per epoch: per panel a rule, per line a hidden_dim, median and band over seeds."""
    models, curves = scan.models, scan.curves
    groups, varying = groups_shown(models), varying_settings(models)
    panels = []
    for setting, rows in settings_of(groups):
        suffix = _title(setting, varying)
        for optimizer in optimizer_order(rows["optimizer"].astype(str)):
            mine = rows[rows["optimizer"] == optimizer]
            title = plot_text(mine["_rule"].iloc[0]) + (f"\n{suffix}" if suffix else "")
            panels.append((title, mine))
    plt, figure, axes = _figure(len(panels), height=3.6, width=4.6)
    dims = sorted(int(d) for d in groups["hidden_dim"].unique())
    colour = dict(zip(dims, colours(len(dims)), strict=True))
    seeds = [int(sums["count"].max()) for sums in curves.sums if sums is not None]
    quantiles = bool(seeds) and min(seeds) >= QUANTILE_BAND_SEEDS
    low, high = ("q10", "q90") if quantiles else ("least", "largest")
    what = (f"{round(100 * BAND[0])}-{round(100 * BAND[1])}% of seeds" if quantiles
            else "range of the seeds")  # fmt: skip
    handles: dict[int, Any] = {}
    for axis, (title, rows) in zip(axes, panels, strict=False):
        found = [(d, curves.band(g)) for d, g in rows[["hidden_dim", "_group"]].to_numpy()]
        bands = [(dim, band) for dim, band in found if band is not None]
        top = max([0.0, *(float(np.nanmax(band["median"])) for _, band in bands)])
        for dim, band in bands:
            x = band["epoch"]  # epoch e is loss_curve[e - 1]
            (handles[int(dim)],) = axis.plot(x, band["median"], color=colour[dim], linewidth=1.2)
            axis.fill_between(x, band[low], band[high], color=colour[dim], alpha=0.15, lw=0)
        axis.set_ylim(0, top * 1.15 if top > 0 else 1)  # a band spiking past the medians is cut
        _mark_epoch(axis, int(min(scan.epoch, int(rows["epochs"].max()))))
        hidden = int(rows["n_diverged"].sum())
        if not bands:
            axis.text(0.5, 0.5, "every seed diverged", transform=axis.transAxes, ha="center")
        axis.set_title(title + (f"\n({hidden} diverged, not shown)" if hidden else ""), fontsize=9)
        _label(axis, "epoch")
    for axis in axes[:: min(len(panels), 3)]:
        axis.set_ylabel("training loss (BCE)")
    if handles:
        listed = sorted(handles)
        _legend(figure, [handles[d] for d in listed], [str(d) for d in listed], "hidden_dim")
    return _finish(plt, figure, f"Training loss per epoch: median (line) and {what} (band)", models)


def _accuracy_panel(axis: Any, rows: pd.DataFrame, table: Any) -> bool:
    """One setting's accuracy per hidden_dim and rule, bars from `table`; whether it drew boxes."""
    part = accuracy_part(rows)
    rules, shown = rules_of(rows), ~rows["_duplicate"].to_numpy(bool)
    palette = colours(len(rules))
    step = 0.7 / max(len(rules), 1)
    # one slot per hidden_dim, evenly spaced: 4, 8, ..., 4096 stay readable side by side
    hidden_all = rows["hidden_dim"].to_numpy()
    dims = np.unique(hidden_all[shown])
    ok = (rows["_outcome"] != "diverged").to_numpy()
    accuracy = rows[f"{part}_accuracy"].to_numpy(np.float64)
    boxes = False
    for i, (name, label, mine) in enumerate(rules):
        mine = mine & ok
        offset = (i - (len(rules) - 1) / 2) * step
        slot, values = np.searchsorted(dims, hidden_all[mine]), accuracy[mine]
        by_slot = {int(k): v for k, v in pd.Series(slot).groupby(slot).indices.items()}
        crowded = [k for k, p in by_slot.items() if len(p) > BOX_THRESHOLD]
        few = ~np.isin(slot, crowded)
        rng = np.random.default_rng(i)  # fixed jitter: the picture is the same every time
        jitter = rng.uniform(-step / 4, step / 4, int(few.sum()))
        axis.scatter(slot[few] + offset + jitter, values[few], s=12, alpha=0.6,
                     color=palette[i], label=plot_text(label))  # fmt: skip
        summaries, places = [], []
        for k in crowded:
            finite = values[by_slot[k]]
            finite = finite[np.isfinite(finite)]
            if finite.size:
                q10, q25, q50, q75, q90 = np.quantile(finite, [0.1, 0.25, 0.5, 0.75, 0.9])
                summaries.append({"med": q50, "q1": q25, "q3": q75, "whislo": q10,
                                  "whishi": q90, "fliers": []})  # fmt: skip
                places.append(k + offset)
        if summaries:
            boxes = True
            axis.bxp(
                summaries, positions=places, widths=step * 0.8, patch_artist=True,
                showfliers=False, manage_ticks=False,
                boxprops={"facecolor": palette[i], "alpha": 0.5, "linewidth": 0.8},
                medianprops={"color": "black", "linewidth": 1.2},
            )  # fmt: skip
        for k in by_slot:
            row = table.loc[(dims[k], name)]
            mean, low, high = (row[f"{part}_accuracy_{x}"] for x in ("mean", "low", "high"))
            if math.isfinite(low) and math.isfinite(high):
                axis.errorbar(k + offset, mean, yerr=[[mean - low], [high - mean]], fmt="_",
                              color="black", markersize=10, capsize=3, linewidth=1)  # fmt: skip
    majority = float(rows[f"_majority_{part}"].to_numpy()[shown][0])
    if math.isfinite(majority):
        axis.axhline(majority, color="grey", linestyle="--", linewidth=1,
                     label=f"majority class ({majority:.3f})")  # fmt: skip
    every = max(1, math.ceil(len(dims) / 20))
    axis.set_xticks(np.arange(len(dims))[::every], [str(d) for d in dims[::every]])
    axis.set_xlim(-0.5, len(dims) - 0.5)
    axis.set_ylim(-0.02, 1.02)
    _label(axis, "hidden_dim", "held-out (test) accuracy" if part == "test" else
           "training accuracy (not held out)")  # fmt: skip
    diverged = int((~ok & shown).sum())
    axis.set_title(f"{diverged} diverged, not shown" if diverged else "", fontsize=9)
    return boxes


def plot_accuracy(models: pd.DataFrame, summary: pd.DataFrame) -> bytes:
    """Accuracy per hidden_dim and rule: every seed a point (a box when crowded), mean and CI."""
    groups = settings_of(models)
    slots = models["hidden_dim"].nunique() * models["optimizer"].nunique()
    # wide enough for every slot, capped: past that the boxes and points just get narrower
    width = min(max(4.6, 1.5 + 0.3 * slots), 12.0)
    plt, figure, axes = _figure(len(groups), height=3.8, width=width, sharey=True)
    varying, boxes = varying_settings(models), False
    for axis, (setting, rows) in zip(axes, groups, strict=False):
        table = summary[np.logical_and.reduce([summary[c] == setting[c] for c in varying])
                        if varying else slice(None)]  # fmt: skip
        boxes |= _accuracy_panel(axis, rows, table.set_index(["hidden_dim", "optimizer"]))
        if suffix := _title(setting, varying):
            panel = figure.get_figwidth() / min(len(groups), 3)
            axis.set_title(textwrap.fill(suffix, max(20, int(panel * 12))) + "\n"
                           + axis.get_title(), fontsize=9)  # fmt: skip
    legend: dict[str, Any] = {}  # every panel's rules, once each
    for axis in axes[: len(groups)]:
        for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    _legend(figure, list(legend.values()), list(legend), "")
    boxed = f": points, or a box (median, quartiles, 10-90%) above {BOX_THRESHOLD}"
    what = "Accuracy per seed" + (boxed if boxes else " (points)")
    what += "; mean and 95% interval over seeds and splits, as in the table (bars)"
    return _finish(plt, figure, what, models)


def plot_slope_by_epoch(numbers: dict[str, Any], models: pd.DataFrame) -> bytes:
    """The blocked slope of the loss on hidden_dim against the epoch, per rule, with its band."""
    settings = numbers["settings"]
    plt, figure, axes = _figure(len(settings), height=3.6, width=7.5 if len(settings) == 1 else 5.2)
    names = list(dict.fromkeys(r["label"] for e in settings for r in e["secondary"]["rules"]))
    colour = dict(zip(names, colours(len(names)), strict=True))
    handles: dict[str, Any] = {}
    for axis, entry in zip(axes, settings, strict=False):
        for rule in entry["secondary"]["rules"]:
            curve, label = rule["slope_by_epoch"], rule["label"]
            x = np.asarray(curve["epoch"])
            mean, low, high = (np.asarray(curve[k], np.float64) for k in ("mean", "low", "high"))
            (handles[label],) = axis.plot(x, mean, color=colour[label], linewidth=1.3)
            axis.fill_between(x, low, high, color=colour[label], alpha=0.2, lw=0)
        axis.axhline(0, color="black", linewidth=0.8)
        _mark_epoch(axis, entry["epoch"])
        if len(settings) > 1:
            setting = entry["setting"]
            axis.set_title(f"learning_rate={setting['learning_rate']:g}, "
                           f"epochs={setting['epochs']}", fontsize=9)  # fmt: skip
        axis.set_xscale("log")
        _label(axis, "epoch", "slope of training loss on hidden_dim")
    if handles:
        _legend(figure, list(handles.values()), [plot_text(n) for n in handles], "rule")
    heading = (
        "Where in training hidden_dim matters: mean per-(split, seed) slope of the loss on "
        f"hidden_dim (line) and its 95% interval over seeds and splits (band); {SECONDARY}"
    )
    return _finish(plt, figure, heading, models)

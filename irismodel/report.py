"""The report: summary statistics, the notebook's two questions answered, plots, markdown, text.

Conventions (the README's "Report" section says the same):

- `loss_curve[e - 1]` is the loss of epoch `e` (1-based), computed by that epoch's forward pass
  before its update, as the notebook printed "Epoch [100/1000]". A run with fewer epochs than
  the epoch asked for is read at its last epoch, and the report says so.
- The majority-class accuracy is `max(p, 1 - p)`, `p` the share of positive rows among the
  evaluated rows: what always predicting the larger class scores. A seed is *stuck* when its
  training accuracy is within `STUCK_TOLERANCE` (0.02) of the training rows' majority-class
  accuracy: the plateau the notebook ran into.
- Intervals are 95% t-intervals of the mean over seeds (`scipy.stats.t`); one seed gives none.
- Diverged seeds (a NaN or infinite loss or weight) are counted, never averaged.
"""

from __future__ import annotations

import argparse
import base64
import io
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from irismodel import storage
from irismodel.results import FILE_SUFFIX, read_results

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


class ReportError(ValueError):
    """The results cannot be reported on (no rows, or an epoch that does not exist)."""


# --------------------------------------------------------------------------- statistics


def mean_interval(values: Iterable[float]) -> tuple[int, float, float, float, float]:
    """Return (n, mean, standard deviation, CI low, CI high) of the finite values.

    The interval is the 95% t-interval of the mean; with fewer than two values the standard
    deviation and the interval are NaN (no interval from one seed).
    """
    array = np.asarray(list(values), dtype=np.float64)
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


def epoch_used(frame: pd.DataFrame, epoch: int = EPOCH_OF_INTEREST) -> pd.Series:
    """Return, per row, the epoch read: `epoch`, or the row's last epoch if it trained fewer."""
    if isinstance(epoch, bool) or not isinstance(epoch, int | np.integer) or epoch < 1:
        raise ReportError(f"epoch: {epoch!r} is not allowed; it must be a positive integer")
    return frame["epochs"].clip(upper=int(epoch)).astype(int)


def loss_at_epoch(frame: pd.DataFrame, epoch: int = EPOCH_OF_INTEREST) -> pd.Series:
    """Return, per row, the loss of epoch `epoch` (1-based): `loss_curve[epoch - 1]`."""
    used = epoch_used(frame, epoch)
    values = [float(curve[e - 1]) for curve, e in zip(frame["loss_curve"], used, strict=True)]
    return pd.Series(values, index=frame.index, dtype=np.float64)


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

    The results hold no class counts, so the positive share is inferred exactly from the
    accuracy, precision and recall of the models evaluated on the same rows (same data, class,
    test size and split seed). NaN when no model's metrics determine it (all perfect) or when
    the part has no rows (`test` with test_size 0).
    """
    if part not in ("train", "test"):
        raise ReportError(f"part: {part!r} is not allowed; valid are 'train', 'test'")
    out = pd.Series(math.nan, index=frame.index, dtype=np.float64)
    if frame.empty:
        return out
    for _, rows in frame.groupby(list(SPLIT_COLUMNS), sort=False, dropna=False):
        n = rows[f"n_{part}"].to_numpy(dtype=np.float64)
        metrics = [
            rows[f"{part}_{m}"].to_numpy(dtype=np.float64)
            for m in ("accuracy", "precision", "recall")
        ]
        positives = _positive_count(n, *metrics)
        share = positives / n
        out.loc[rows.index] = np.maximum(share, 1 - share)
    return out


def _prepare(frame: pd.DataFrame) -> pd.DataFrame:
    """Check there are rows; keep one row per setting x configuration x seed (the latest run)."""
    if frame is None or len(frame) == 0:
        raise ReportError("report: no results rows to report on (is the location or run right?)")
    keys = [*SETTING_COLUMNS, "hidden_dim", "optimizer", "seed"]
    frame = frame.sort_values("run_started_at", kind="stable")
    frame = frame.drop_duplicates(keys, keep="last")
    return frame.sort_values(["hidden_dim", "optimizer", "seed"], kind="stable").reset_index(
        drop=True
    )


def varying_settings(frame: pd.DataFrame) -> list[str]:
    """Return the setting columns that take more than one value in `frame`."""
    return [c for c in SETTING_COLUMNS if frame[c].nunique(dropna=False) > 1]


def _settings(frame: pd.DataFrame) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """Split `frame` into groups of one setting each: [(setting values, rows)]."""
    columns = list(SETTING_COLUMNS)
    groups = []
    for values, rows in frame.groupby(columns, sort=True, dropna=False):
        groups.append((dict(zip(columns, values, strict=True)), rows))
    return groups


def _optimizer_order(names: Iterable[str]) -> list[str]:
    order = list(OPTIMIZER_ORDER)
    return sorted(set(names), key=lambda n: (order.index(n) if n in order else len(order), n))


def summarize(frame: pd.DataFrame, epoch: int = EPOCH_OF_INTEREST) -> pd.DataFrame:
    """Return one row per (hidden_dim, optimizer), and per setting where runs differ in one.

    Columns: `n_seeds` (all rows), `n_diverged`, `epoch` (the epoch read), then for
    `loss_at_epoch`, `final_loss`, `train_accuracy` and `test_accuracy` the `_mean`, `_std`,
    `_ci_low` and `_ci_high` over the seeds that did not diverge, `train_majority_accuracy`
    and `stuck_share` (of the seeds that did not diverge). Test columns are NaN when nothing
    was held out (test_size 0).
    """
    frame = _prepare(frame)
    frame = frame.assign(
        _loss_at_epoch=loss_at_epoch(frame, epoch),
        _epoch=epoch_used(frame, epoch),
        _majority=majority_accuracy(frame, "train"),
    )
    keys = [*varying_settings(frame), "hidden_dim", "optimizer"]
    records = []
    for values, rows in frame.groupby(keys, sort=True, dropna=False):
        record: dict[str, Any] = dict(zip(keys, values, strict=True))
        ok = rows[~rows["diverged"]]
        record["n_seeds"] = len(rows)
        record["n_diverged"] = int(rows["diverged"].sum())
        record["epoch"] = int(rows["_epoch"].iloc[0])
        for name, column in (
            ("loss_at_epoch", "_loss_at_epoch"),
            ("final_loss", "final_train_loss"),
            ("train_accuracy", "train_accuracy"),
            ("test_accuracy", "test_accuracy"),
        ):
            _, mean, std, low, high = mean_interval(ok[column].astype(np.float64))
            record.update(
                {f"{name}_mean": mean, f"{name}_std": std, f"{name}_ci_low": low,
                 f"{name}_ci_high": high}
            )  # fmt: skip
        majority = float(rows["_majority"].iloc[0])
        record["train_majority_accuracy"] = majority
        stuck = (ok["train_accuracy"].astype(np.float64) - majority).abs() <= STUCK_TOLERANCE
        record["stuck_share"] = float(stuck.mean()) if len(ok) else math.nan
        records.append(record)
    summary = pd.DataFrame.from_records(records)
    order = _optimizer_order(summary["optimizer"])
    summary["_order"] = summary["optimizer"].map(order.index)
    summary = summary.sort_values([*keys[:-2], "hidden_dim", "_order"], kind="stable")
    return summary.drop(columns="_order").reset_index(drop=True)


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
                value = value[:8]
            elif isinstance(value, float):
                value = f"{value:g}"
            row[column] = value
        epoch = record["epoch"]
        row["hidden_dim"] = int(record["hidden_dim"])
        row["optimizer"] = record["optimizer"]
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


def _setting_label(setting: Mapping[str, Any]) -> str:
    return (
        f"learning_rate={setting['learning_rate']:g}, epochs={setting['epochs']}, "
        f"test_size={setting['test_size']:g}, split_seed={setting['split_seed']}, "
        f"standardize={str(setting['standardize']).lower()}, "
        f"positive_class={setting['positive_class']}"
    )


def _p_text(p: float) -> str:
    if not math.isfinite(p):
        return "p undefined"
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}" if p < 0.01 else f"p = {p:.2f}"


def _seeds_text(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def _trend(rows: pd.DataFrame, epoch: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Question 2 for one setting: per optimizer, Spearman's rho of loss@epoch vs hidden_dim."""
    results, lines = [], []
    ok = rows[~rows["diverged"]]
    for optimizer in _optimizer_order(rows["optimizer"]):
        mine = ok[ok["optimizer"] == optimizer]
        all_mine = rows[rows["optimizer"] == optimizer]
        dims = sorted(all_mine["hidden_dim"].unique())
        n_seeds = int(all_mine["seed"].nunique())
        means = []
        for dim in dims:
            n, mean, _, low, high = mean_interval(mine.loc[mine["hidden_dim"] == dim, "_loss"])
            means.append(
                {"hidden_dim": int(dim), "n": n, "mean": mean, "ci_low": low, "ci_high": high}
            )
        rho = p = math.nan
        if len(mine["hidden_dim"].unique()) >= 2 and mine["_loss"].nunique() >= 2:
            rho, p = (float(v) for v in stats.spearmanr(mine["hidden_dim"], mine["_loss"]))
        diverged = int(all_mine["diverged"].sum())
        result = {
            "optimizer": optimizer,
            "epoch": epoch,
            "spearman_rho": rho,
            "p_value": p,
            "n_models": len(mine),
            "n_seeds": n_seeds,
            "n_diverged": diverged,
            "means": means,
        }
        results.append(result)
        span = f"hidden_dim {dims[0]}..{dims[-1]}" if len(dims) > 1 else f"hidden_dim {dims[0]}"
        over = f"over {_seeds_text(n_seeds)} x {len(dims)} hidden_dims ({len(mine)} models)"
        if len(dims) < 2:
            verdict = f"cannot tell: only {span} was swept, so there is no trend to measure"
        elif not math.isfinite(p):
            verdict = f"no trend can be measured ({len(mine)} models that did not diverge)"
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
            for m in means
        )
        line = f"- {optimizer}: {verdict}. Mean loss at epoch {epoch} [95% CI] by hidden_dim: "
        line += means_text + "."
        if diverged:
            line += f" {diverged} diverged model(s) (NaN/inf loss) are left out and counted here."
        lines.append(line)
    return results, lines


def _paired(rows: pd.DataFrame, first: str, second: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    keys = ["hidden_dim", "seed"]
    a = rows[rows["optimizer"] == first].set_index(keys)
    b = rows[rows["optimizer"] == second].set_index(keys)
    common = a.index.intersection(b.index).sort_values()
    return a.loc[common], b.loc[common]


def _curve_difference(a: pd.DataFrame, b: pd.DataFrame) -> tuple[float, bool]:
    """Return the largest |difference| of paired loss curves, and whether NaN/inf agree too."""
    largest, same_nonfinite = 0.0, True
    for left, right in zip(a["loss_curve"], b["loss_curve"], strict=True):
        left, right = np.asarray(left, np.float64), np.asarray(right, np.float64)
        if left.shape != right.shape:
            return math.inf, False
        both = np.isfinite(left) & np.isfinite(right)
        same_nonfinite &= bool(np.array_equal(left[~both], right[~both], equal_nan=True))
        if both.any():
            largest = max(largest, float(np.abs(left[both] - right[both]).max()))
    return largest, same_nonfinite


def _question1(rows: pd.DataFrame, epoch: int) -> tuple[dict[str, Any], list[str]]:
    """Question 1 for one setting: accuracy per optimizer, manual vs sgd, no-zero-grad's fall."""
    held_out = bool(rows["test_size"].iloc[0] > 0) and rows["test_accuracy"].notna().any()
    part = "test" if held_out else "train"
    column = f"{part}_accuracy"
    majority = float(majority_accuracy(rows, part).iloc[0])
    where = (
        "held-out accuracy (test rows never trained on)"
        if held_out
        else "training-data accuracy (NOT held out: test_size=0 evaluates on the training rows, "
        "as the notebook did)"
    )
    numbers: dict[str, Any] = {
        "accuracy_part": part,
        "majority_accuracy": majority,
        "optimizers": {},
    }
    lines = [f"- {where[0].upper() + where[1:]}, mean [95% CI] over seeds:"]
    ok = rows[~rows["diverged"]]
    for optimizer in _optimizer_order(rows["optimizer"]):
        mine = ok[ok["optimizer"] == optimizer]
        all_mine = rows[rows["optimizer"] == optimizer]
        n, mean, _, low, high = mean_interval(mine[column].astype(np.float64))
        diverged = int(all_mine["diverged"].sum())
        stuck = int(
            ((mine["train_accuracy"].astype(np.float64) - mine["_majority_train"]).abs()
             <= STUCK_TOLERANCE).sum()
        )  # fmt: skip
        numbers["optimizers"][optimizer] = {
            "n": n, "mean": mean, "ci_low": low, "ci_high": high, "n_diverged": diverged,
            "n_stuck": stuck, "n_models": len(all_mine),
        }  # fmt: skip
        text = f"  - {optimizer}: {_interval_text(mean, low, high)} ({n} models"
        text += f", {diverged} diverged and left out" if diverged else ""
        text += f", {stuck} stuck near the majority class in training" if stuck else ""
        lines.append(text + ")" + _verdict(low, high, majority))
    if math.isfinite(majority):
        lines.append(
            f"  - Always predicting the majority class scores {majority:.3f}: a model is good "
            "when its whole interval lies above that."
        )
    present = set(rows["optimizer"])
    if {"sgd", "manual"} <= present:
        a, b = _paired(rows, "sgd", "manual")
        largest, same_nonfinite = _curve_difference(a, b)
        exact = largest == 0.0 and same_nonfinite
        numbers["manual_vs_sgd_max_abs_difference"] = largest
        numbers["manual_matches_sgd_exactly"] = exact
        if exact:
            lines.append(
                f"- manual matched sgd exactly: over {len(a)} paired models (same hidden_dim and "
                "seed) the largest absolute difference of the loss curves is 0.0. With gradients "
                "reset every epoch the hand-written step is the same arithmetic as "
                'torch.optim.SGD; there are no hidden "PyTorch optimizations".'
            )
        else:
            lines.append(
                f"- manual did NOT match sgd exactly: over {len(a)} paired models the largest "
                f"absolute difference of the loss curves is {largest:.3g}."
            )
    if "manual-no-zero-grad" in present:
        train_majority = float(rows["_majority_train"].iloc[0])
        lines.extend(_no_zero_grad(rows, column, part, train_majority, numbers))
    else:
        lines.append(
            "- The notebook's second loop was not swept; add `manual-no-zero-grad` to the "
            "optimizers to measure how far it falls."
        )
    return numbers, lines


def _verdict(low: float, high: float, majority: float) -> str:
    """Say whether an accuracy interval lies above, below or around the majority baseline."""
    if not (math.isfinite(low) and math.isfinite(majority)):
        return ""
    if low > majority:
        return ": better than the majority-class baseline"
    if high < majority:
        return ": worse than the majority-class baseline"
    return ": not distinguishable from the majority-class baseline"


def _no_zero_grad(
    rows: pd.DataFrame, column: str, part: str, train_majority: float, numbers: dict[str, Any]
) -> list[str]:
    """How far the notebook's second loop fell against sgd, and why."""
    mine = numbers["optimizers"]["manual-no-zero-grad"]
    lines = []
    reference = "sgd" if "sgd" in set(rows["optimizer"]) else None
    if reference is not None:
        a, b = _paired(rows, reference, "manual-no-zero-grad")
        both = ~a["diverged"].to_numpy() & ~b["diverged"].to_numpy()
        drop = (
            a[column].astype(np.float64).to_numpy()[both]
            - b[column].astype(np.float64).to_numpy()[both]
        )
        n, mean, _, low, high = mean_interval(drop)
        numbers["no_zero_grad_accuracy_drop"] = {
            "n": n,
            "mean": mean,
            "ci_low": low,
            "ci_high": high,
        }
        if math.isfinite(low) and low > 0:
            how = f"fell {part} accuracy by {_interval_text(mean, low, high)} against sgd"
        elif math.isfinite(high) and high < 0:
            how = f"did better than sgd, by {_interval_text(-mean, -high, -low)} {part} accuracy"
        else:
            how = (
                f"differed from sgd by {_interval_text(-mean, -high, -low)} {part} accuracy "
                "(its accuracy minus sgd's), an interval that includes no difference"
            )
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


def answer_questions(frame: pd.DataFrame, epoch: int = EPOCH_OF_INTEREST) -> Answers:
    """Answer the notebook's questions from the results, per setting when runs differ.

    Question 1: is the model good, and did the hand-written update match torch.optim.SGD?
    Question 2: does the loss at epoch `epoch` fall as hidden_dim grows?
    """
    frame = _prepare(frame)
    frame = frame.assign(
        _loss=loss_at_epoch(frame, epoch), _majority_train=majority_accuracy(frame, "train")
    )
    groups = _settings(frame)
    several = len(groups) > 1
    q1_parts, q2_parts, notes = [], [], []
    numbers: dict[str, Any] = {"settings": []}
    for setting, rows in groups:
        used = int(min(epoch, int(setting["epochs"])))
        if used != epoch:
            notes.append(
                f"Runs with {setting['epochs']} epochs have no epoch {epoch}; their last epoch "
                f"({used}) is used instead."
            )
        header = [f"With {_setting_label(setting)}:"] if several else []
        q1_numbers, q1_lines = _question1(rows, used)
        trend, q2_lines = _trend(rows, used)
        q1_parts.append("\n".join(header + q1_lines))
        q2_parts.append("\n".join(header + q2_lines))
        numbers["settings"].append(
            {"setting": setting, "epoch": used, "question1": q1_numbers, "question2": trend}
        )
    diverged = int(frame["diverged"].sum())
    if diverged:
        notes.append(
            f"{diverged} of {len(frame)} models diverged (NaN or infinite loss); they are counted "
            "in the tables and left out of every mean, interval and trend."
        )
    return Answers("\n\n".join(q1_parts), "\n\n".join(q2_parts), numbers, notes)


# --------------------------------------------------------------------------- plots


def _run_title(frame: pd.DataFrame) -> str:
    """Return a plot title line with the run(s) and their parameters."""
    runs = frame["flow_run_id"].unique()
    seeds = sorted(frame["seed"].unique())
    parts = [
        f"run {runs[0][:8]}" if len(runs) == 1 else f"{len(runs)} runs",
        f"{len(seeds)} seeds",
    ]
    for column, fmt in (("learning_rate", "lr={:g}"), ("epochs", "epochs={}"),
                        ("test_size", "test_size={:g}")):  # fmt: skip
        values = sorted(frame[column].unique())
        parts.append(fmt.format(values[0]) if len(values) == 1 else f"{column} varies")
    return ", ".join(parts)


def _panels(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """One panel per optimizer, and per setting where runs differ."""
    varying = varying_settings(frame)
    panels = []
    for setting, rows in _settings(frame):
        suffix = ", ".join(f"{c}={setting[c]}" for c in varying if c != "data_fingerprint")
        for optimizer in _optimizer_order(rows["optimizer"]):
            title = optimizer + (f"\n{suffix}" if suffix else "")
            panels.append((title, rows[rows["optimizer"] == optimizer]))
    return panels


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
    """Write `data` to a local path or `pyarrow.fs` URI, replacing what was there."""
    fs, inner = storage.resolve(path)
    parent = os.path.dirname(inner.rstrip("/")) if "://" not in path else inner.rsplit("/", 1)[0]
    if parent:
        fs.create_dir(parent, recursive=True)
    with fs.open_output_stream(inner) as stream:
        stream.write(data)
    return path


def plot_loss_curves(frame: pd.DataFrame, path: str, epoch: int = EPOCH_OF_INTEREST) -> str:
    """Plot the training loss per epoch: mean and 95% band over seeds, one line per hidden_dim.

    One panel per optimizer; the epoch of interest is marked. Diverged seeds are left out.
    Returns `path` (a PNG).
    """
    frame = _prepare(frame)
    panels = _panels(frame)
    plt, figure, axes = _figure(len(panels), sharey=False)
    dims = sorted(frame["hidden_dim"].unique())
    colours = dict(zip(dims, plt.get_cmap("viridis")(np.linspace(0, 0.9, len(dims))), strict=True))
    handles: dict[int, Any] = {}
    for axis, (title, rows) in zip(axes, panels, strict=False):
        ok = rows[~rows["diverged"]]
        top = 0.0
        for dim in dims:
            mine = ok[ok["hidden_dim"] == dim]
            if mine.empty:
                continue
            curves = np.stack([np.asarray(c, np.float64) for c in mine["loss_curve"]])  # (K, E)
            x = np.arange(1, curves.shape[1] + 1)  # epoch e is loss_curve[e - 1]
            mean = curves.mean(0)  # (E,)
            top = max(top, float(mean.max()))
            (handles[dim],) = axis.plot(x, mean, color=colours[dim], linewidth=1.1)
            if len(curves) > 1:
                half = (
                    stats.t.ppf(0.5 + CONFIDENCE / 2, len(curves) - 1)
                    * curves.std(0, ddof=1)
                    / math.sqrt(len(curves))
                )  # (E,)
                axis.fill_between(x, mean - half, mean + half, color=colours[dim], alpha=0.15, lw=0)
        # The means decide the scale: a band that spikes past them is cut, not the lines.
        axis.set_ylim(0, top * 1.1 if top > 0 else 1)
        used = int(min(epoch, int(rows["epochs"].max())))
        axis.axvline(used, color="grey", linestyle="--", linewidth=1)
        axis.annotate(
            f"epoch {used}", (used, 1), xycoords=("data", "axes fraction"),
            xytext=(3, -12), textcoords="offset points", fontsize=8, color="grey",
        )  # fmt: skip
        diverged = int(rows["diverged"].sum())
        if ok.empty:
            axis.text(0.5, 0.5, "every seed diverged", transform=axis.transAxes, ha="center")
        axis.set_title(
            title + (f" ({diverged} diverged, not shown)" if diverged else ""), fontsize=10
        )
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    for axis in axes[len(panels) :]:
        axis.set_visible(False)
    for axis in axes[:: min(len(panels), 3)]:
        axis.set_ylabel("training loss (BCE)")
    if handles:
        figure.legend(
            [handles[d] for d in sorted(handles)],
            [str(d) for d in sorted(handles)],
            title="hidden_dim",
            loc="center right",
            fontsize=8,
            title_fontsize=8,
        )
    figure.suptitle(
        f"Training loss per epoch: mean (line) and 95% CI (band) over seeds\n{_run_title(frame)}",
        fontsize=11,
    )
    figure.tight_layout(rect=(0, 0, 0.93 if handles else 1, 1))
    return _save(plt, figure, path)


def plot_test_accuracy(frame: pd.DataFrame, path: str) -> str:
    """Plot accuracy per hidden_dim and optimizer, every seed a point, the mean with its CI.

    Held-out (test) accuracy; training accuracy, labelled so, where nothing was held out.
    The majority-class accuracy is drawn as a dashed line. Returns `path` (a PNG).
    """
    frame = _prepare(frame)
    groups = _settings(frame)
    slots = frame["hidden_dim"].nunique() * frame["optimizer"].nunique()
    plt, figure, axes = _figure(len(groups), height=4.0, width=max(4.6, 1.5 + 0.3 * slots))
    varying = varying_settings(frame)
    for axis, (setting, rows) in zip(axes, groups, strict=False):
        held_out = bool(setting["test_size"] > 0) and rows["test_accuracy"].notna().any()
        part = "test" if held_out else "train"
        optimizers = _optimizer_order(rows["optimizer"])
        width = 0.7 / max(len(optimizers), 1)
        for i, optimizer in enumerate(optimizers):
            mine = rows[(rows["optimizer"] == optimizer) & ~rows["diverged"]]
            offset = (i - (len(optimizers) - 1) / 2) * width
            rng = np.random.default_rng(i)  # fixed jitter: the picture is the same every time
            jitter = rng.uniform(-width / 4, width / 4, len(mine))
            axis.scatter(
                mine["hidden_dim"] + offset + jitter, mine[f"{part}_accuracy"], s=12,
                alpha=0.6, color=f"C{i}", label=optimizer,
            )  # fmt: skip
            for dim in sorted(mine["hidden_dim"].unique()):
                values = mine.loc[mine["hidden_dim"] == dim, f"{part}_accuracy"]
                _, mean, _, low, high = mean_interval(values.astype(np.float64))
                if math.isfinite(low):
                    axis.errorbar(
                        dim + offset, mean, yerr=[[mean - low], [high - mean]], fmt="_",
                        color="black", markersize=10, capsize=3, linewidth=1,
                    )  # fmt: skip
        majority = majority_accuracy(rows, part).iloc[0]
        if math.isfinite(majority):
            axis.axhline(majority, color="grey", linestyle="--", linewidth=1,
                         label=f"majority class ({majority:.3f})")  # fmt: skip
        axis.set_xticks(sorted(rows["hidden_dim"].unique()))
        axis.set_xlabel("hidden_dim")
        axis.set_ylabel(
            "held-out (test) accuracy" if held_out else "training accuracy (not held out)"
        )
        suffix = ", ".join(f"{c}={setting[c]}" for c in varying if c != "data_fingerprint")
        diverged = int(rows["diverged"].sum())
        title = (suffix + "\n" if suffix else "") + (
            f"{diverged} diverged, not shown" if diverged else ""
        )
        axis.set_title(title.strip(), fontsize=9)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="lower right")
    for axis in axes[len(groups) :]:
        axis.set_visible(False)
    figure.suptitle(
        f"Accuracy per seed (points), mean and 95% CI (bars)\n{_run_title(frame)}", fontsize=11
    )
    figure.tight_layout()
    return _save(plt, figure, path)


# --------------------------------------------------------------------------- rendering


def _table_text(table: pd.DataFrame) -> str:
    return table.to_string(index=False)


def _markdown_table(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(str(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _runs_text(frame: pd.DataFrame) -> str:
    runs = frame.groupby("flow_run_id", sort=False).agg(
        started=("run_started_at", "first"), status=("run_status", "first"), rows=("seed", "size")
    )
    parts = [
        f"{run} ({row.started:%Y-%m-%d %H:%M} UTC, {row.rows} models, {row.status})"
        for run, row in runs.sort_values("started").iterrows()
    ]
    return "; ".join(parts)


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
    """
    lines = [
        "# iris-sweep report",
        "",
        f"Runs: {_runs_text(frame)}. Parameters: {_run_title(frame)}.",
        "",
        "## 1. Is the model good, and why did the hand-written update do worse than SGD?",
        "",
        answers.question1,
        "",
        f"## 2. Does the loss at epoch {epoch} fall as hidden_dim grows?",
        "",
        answers.question2,
        "",
    ]
    if answers.notes:
        lines += ["**Notes.** " + " ".join(answers.notes), ""]
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
        lines += [f"![{caption}](data:image/png;base64,{encoded})", ""]
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
    """A built report: the statistics, the answers, the rendered texts and the files written."""

    summary: pd.DataFrame
    answers: Answers
    markdown: str
    text: str
    paths: dict[str, str]


def report_files(out_dir: str, prefix: str = REPORT_PREFIX) -> dict[str, str]:
    """Return the paths `build_report` writes, by `loss_curves`, `accuracy`, `markdown`, `text`."""
    return {
        "loss_curves": storage.join(out_dir, f"{prefix}-loss-curves.png"),
        "accuracy": storage.join(out_dir, f"{prefix}-accuracy.png"),
        "markdown": storage.join(out_dir, f"{prefix}.md"),
        "text": storage.join(out_dir, f"{prefix}.txt"),
    }


def written_text(results_path: str) -> str:
    """Return the terminal text the flow's report wrote beside the results file `results_path`."""
    text = report_files(folder_of(results_path), report_prefix(results_path))["text"]
    return _read_bytes(text).decode()


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
    summary = summarize(frame, epoch)
    answers = answer_questions(frame, epoch)
    frame = _prepare(frame)
    paths = report_files(out_dir, prefix)
    plot_loss_curves(frame, paths["loss_curves"], epoch)
    plot_test_accuracy(frame, paths["accuracy"])
    images = {"loss curves": paths["loss_curves"], "accuracy per seed": paths["accuracy"]}
    markdown = render_markdown(frame, answers, summary, images, epoch)
    text = format_terminal(answers, summary, epoch)
    _write_bytes(paths["markdown"], markdown.encode())
    _write_bytes(paths["text"], text.encode())
    return Report(summary, answers, markdown, text, paths)


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

    Raises `ReportError` when there are no rows to report on, or `out_dir` is missing for a
    DataFrame.
    """
    if isinstance(source, pd.DataFrame):
        frame = source
        if run_ids is not None:
            frame = frame[frame["flow_run_id"].isin(list(run_ids))]
        if out_dir is None:
            raise ReportError("out_dir: required when the report is built from a DataFrame")
    else:
        frame = read_results(source, flow_run_ids=run_ids)
        out_dir = out_dir if out_dir is not None else folder_of(source)
    if len(frame) == 0:
        wanted = f" of run(s) {', '.join(run_ids)}" if run_ids else ""
        raise ReportError(f"report: no results rows{wanted} to report on")
    return build_report(frame, out_dir, epoch, prefix)


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
    except ValueError as error:  # ReportError, ResultsError, bad locations
        print(f"iris-sweep-report: error: {error}", file=sys.stderr)
        return 2
    print(report.text)
    print()
    for name in ("loss_curves", "accuracy", "markdown"):
        print(f"{name.replace('_', ' ')}: {report.paths[name]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Building a report from a results location or frame: statistics, answers, plots, files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from irismodel.store import list_result_files, locations
from irismodel.store.layout import FILE_SUFFIX
from irismodel.store.reader import Source

from .answers import Answers, answer_numbers
from .plots import groups_shown, plot_accuracy, plot_loss, write_bytes
from .rendering import format_terminal, plain, render_markdown
from .scan import Scan, scan_frame, scan_source
from .secondary import add_secondary, plot_slope_by_epoch
from .settings import EPOCH_OF_INTEREST, REPORT_PREFIX, SETTING_COLUMNS, ReportError, check_epoch
from .summary import summarize_models
from .wording import word_answers


@dataclass
class Report:
    """A built report: the statistics, the answers, the rendered texts and the files written.

    `curves` holds the loss-curve plot's numbers: per setting, hidden_dim, optimizer and drawn
    epoch, the models counted (`n`), the mean, the least and largest loss and the 10/50/90th
    percentiles (from histograms: close, not exact).
    """

    summary: pd.DataFrame
    answers: Answers
    markdown: str
    text: str
    paths: dict[str, str]
    curves: pd.DataFrame | None = None


def summarize(frame: pd.DataFrame, epoch: int = EPOCH_OF_INTEREST) -> pd.DataFrame:
    """Return one row per (hidden_dim, optimizer), and per setting where runs differ in one.

    Columns: `rules` (the name shown: `sgd = manual` when manual's rows repeat sgd's, which
    are then one row), `n_seeds`, `n_converged`, `n_stalled`, `n_diverged`, `n_unknown`, the
    Wilson 95% intervals `stalled_rate`/`_low`/`_high` and `diverged_rate`/`_low`/`_high`,
    `epoch` (the epoch read), then for `loss_at_epoch`, `final_loss`, `train_accuracy` and
    `test_accuracy` the `_median`, `_mean`, `_low` and `_high` (95% bootstrap interval of the
    mean over seeds, one data split, inside the quantity's range) over the seeds that did not
    diverge; `held_out` (whether the setting has test rows), `train_majority_accuracy` and
    `baseline_loss`.
    """
    return summarize_models(scan_frame(frame, epoch, curves=False).models)


def answer_questions(frame: pd.DataFrame, epoch: int = EPOCH_OF_INTEREST) -> Answers:
    """Answer the notebook's questions from the results, per setting when runs differ.

    Question 1: is the model good, and does the hand-written update match torch.optim.SGD?
    Question 2: does the loss at epoch `epoch` fall as hidden_dim grows?
    Beyond them, pre-specified: the first epoch below the linear baseline, the slope by epoch.
    """
    scan = scan_frame(frame, epoch, curves=False)
    return word_answers(add_secondary(answer_numbers(scan), scan), plain)


def plot_loss_curves(frame: pd.DataFrame, path: str, epoch: int = EPOCH_OF_INTEREST) -> str:
    """Plot the training loss per epoch over seeds, one line and band per hidden_dim; a PNG."""
    return plot_loss(scan_frame(frame, epoch), path)


def plot_test_accuracy(frame: pd.DataFrame, path: str) -> str:
    """Plot accuracy per hidden_dim and optimizer, every seed a point, the mean and interval."""
    return plot_accuracy(scan_frame(frame, EPOCH_OF_INTEREST, curves=False).models, path)


def report_prefix(results_path: str) -> str:
    """Return the report files' name prefix for one results file or run folder: `_<its name>`."""
    name = locations.base_name(results_path)  # a URI's query options are no part of it
    name = name[: -len(FILE_SUFFIX)] if name.endswith(FILE_SUFFIX) else name
    return "_" + name.lstrip("._")


def report_files(out_dir: str, prefix: str = REPORT_PREFIX) -> dict[str, str]:
    """Return the paths a report writes, by name: the three plots, `markdown` and `text`.

    Names: `loss_curves`, `accuracy`, `slope_by_epoch`, `markdown`, `text`.
    """
    return {
        "loss_curves": locations.child(out_dir, f"{prefix}-loss-curves.png"),
        "accuracy": locations.child(out_dir, f"{prefix}-accuracy.png"),
        "slope_by_epoch": locations.child(out_dir, f"{prefix}-slope-by-epoch.png"),
        "markdown": locations.child(out_dir, f"{prefix}.md"),
        "text": locations.child(out_dir, f"{prefix}.txt"),
    }


def folder_of(location: str) -> str:
    """Return the folder a results location names: itself, or a results file's folder."""
    if not location.rstrip("/").endswith(FILE_SUFFIX):
        return location
    if "://" in location:
        return location.rstrip("/").rsplit("/", 1)[0]
    return os.path.dirname(os.path.abspath(location))


def written_text(results_path: str) -> str:
    """Return the terminal text the flow's report wrote beside the results `results_path`."""
    text = report_files(folder_of(results_path), report_prefix(results_path))["text"]
    return locations.read_bytes(text).decode()


def _curve_table(scan: Scan) -> pd.DataFrame | None:
    if scan.curves is None:
        return None
    parts = []
    for record in groups_shown(scan.models).to_dict("records"):
        band = scan.curves.band(int(record["_group"]))
        if band is not None:
            part = pd.DataFrame(band)
            for column in reversed((*SETTING_COLUMNS, "hidden_dim", "optimizer")):
                part.insert(0, column, record[column])
            parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else None


def _build(scan: Scan, out_dir: str, prefix: str) -> Report:
    summary = summarize_models(scan.models)
    numbers = add_secondary(answer_numbers(scan), scan)
    answers = word_answers(numbers, plain)
    paths = report_files(out_dir, prefix)
    plot_loss(scan, paths["loss_curves"])
    plot_accuracy(scan.models, paths["accuracy"])
    plot_slope_by_epoch(numbers, scan.models, paths["slope_by_epoch"])
    images = {"loss curves": paths["loss_curves"], "accuracy per seed": paths["accuracy"],
              "slope of the loss on hidden_dim by epoch (pre-specified secondary summary)":
              paths["slope_by_epoch"]}  # fmt: skip
    markdown = render_markdown(scan.models, answers, summary, images, scan.epoch)
    text = format_terminal(answers, summary, scan.epoch)
    write_bytes(paths["markdown"], markdown.encode())
    write_bytes(paths["text"], text.encode())
    return Report(summary, answers, markdown, text, paths, _curve_table(scan))


def build_report(
    frame: pd.DataFrame, out_dir: str, epoch: int = EPOCH_OF_INTEREST, prefix: str = REPORT_PREFIX
) -> Report:
    """Build the report of `frame` and write its files under `out_dir`, replacing older ones.

    Files: `<prefix>-loss-curves.png`, `<prefix>-accuracy.png`, `<prefix>-slope-by-epoch.png`,
    `<prefix>.md` (plots embedded)
    and `<prefix>.txt` (the terminal text), each written atomically (`writer.write_file`).
    """
    return _build(scan_frame(frame, epoch), out_dir, prefix)


def report_of(
    source: str | pd.DataFrame,
    out_dir: str | None = None,
    run_ids: Sequence[str] | None = None,
    epoch: int = EPOCH_OF_INTEREST,
    prefix: str = REPORT_PREFIX,
) -> Report:
    """Build the report of a results location (or DataFrame), write its files, return it all.

    A location is streamed: every results file is read column by column, batch by batch,
    keeping per-model scalars and per-configuration curve aggregates, never a whole curve
    column. `run_ids` keeps only those flow runs; files go to `out_dir` (default: the results
    folder). Raises `ReportError` when there are no rows to report on, or `out_dir` is missing
    for a DataFrame.
    """
    epoch = check_epoch(epoch)
    if isinstance(source, pd.DataFrame):
        if out_dir is None:
            raise ReportError("out_dir: required when the report is built from a DataFrame")
        frame = source
        if run_ids is not None:
            frame = frame[frame["flow_run_id"].isin([str(r) for r in run_ids])]
        if len(frame) == 0:
            wanted = f" of run(s) {', '.join(run_ids)}" if run_ids else ""
            raise ReportError(f"report: no results rows{wanted} to report on")
        rows = Source.of_frame(frame)
    else:
        filesystem, _ = locations.resolve(source)
        rows = Source(list_result_files(source), filesystem)
        out_dir = out_dir if out_dir is not None else folder_of(source)
    return _build(scan_source(rows, epoch, run_ids), out_dir, prefix)


def write_report(
    source: str | pd.DataFrame,
    out_dir: str | None = None,
    run_ids: Sequence[str] | None = None,
    epoch: int = EPOCH_OF_INTEREST,
    prefix: str = REPORT_PREFIX,
) -> dict[str, str]:
    """Write the plots, the markdown report and the terminal text (as `report_of`); their paths."""
    return report_of(source, out_dir, run_ids, epoch, prefix).paths

"""A report from a results location or frame: numbers, words, plots, its files; the command line."""

import base64
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from irismodel.store import locations, writer
from irismodel.store.layout import FILE_SUFFIX

from .answers import Answers, answer_numbers
from .comparison import (
    COMPARISONS,
    comparison_lines,
    comparison_sections,
    comparison_warnings,
    manifest_comparisons,
)
from .plots import groups_shown, plot_accuracy, plot_loss, plot_slope_by_epoch
from .scan import Scan, scan
from .settings import EPOCH_OF_INTEREST, SETTING_COLUMNS, ReportError, check_epoch
from .summary import summarize_models, summary_text_table
from .text import (
    DATA_COLUMNS,
    SECONDARY,
    markdown_table,
    markdown_text,
    plain,
    run_title,
    runs_text,
)
from .wording import SECONDARY_RULE, word_answers

# pandas' and pyarrow's folder readers skip names starting with "_" or "."; report files start
# with "_" so that `pd.read_parquet(results_folder)` never trips over a PNG beside the Parquet.
REPORT_PREFIX = "_iris-sweep-report"
QUESTION1 = "Is the model good, and does the hand-written update match torch.optim.SGD?"
QUESTION2 = "Does the loss at epoch {} fall as hidden_dim grows?"
SECONDARY_HEADING = SECONDARY[0].upper() + SECONDARY[1:]
TABLE_LEGEND = (
    "Per configuration: models (seeds x splits), then how many converged / stalled / "
    "oscillating / diverged; the stalled rate with its 95% Wilson interval; the median model "
    "and the mean with its 95% bootstrap interval over seeds and splits, over every model with "
    "a finite value. Epochs are 1-based: the loss of epoch e is `loss_curve[e - 1]`."
)
FILES = {"loss_curves": "-loss-curves.png", "accuracy": "-accuracy.png",
         "slope_by_epoch": "-slope-by-epoch.png", "markdown": ".md", "text": ".txt",
         "answers": "-answers.json"}  # fmt: skip
KEY_NUMBERS = ("slope", "slope low", "slope high", "p", "accuracy")  # per rule, `answer_summary`
CAPTIONS = (
    "loss curves",
    "accuracy per seed",
    "slope of the loss on hidden_dim by epoch (pre-specified secondary summary)",
)


@dataclass
class Report:
    """A built report: the statistics, the answers, the rendered texts and the files written.

    `curves` holds the loss-curve plot's numbers per setting, hidden_dim, optimizer and drawn
    epoch: models (`n`), mean, least, largest and 10/50/90th percentiles (from histograms: close).
    """

    summary: pd.DataFrame
    answers: Answers
    markdown: str
    text: str
    paths: dict[str, str]
    curves: pd.DataFrame | None = None
    key_numbers: dict[str, Any] | None = None  # `answer_summary`: what a run's history shows


def summarize(frame: pd.DataFrame, epoch: int = EPOCH_OF_INTEREST) -> pd.DataFrame:
    """Return one row per (hidden_dim, optimizer), and per setting where runs differ in one.

    Columns: `rules` (the name shown: `sgd = manual` when manual's rows repeat sgd's, which
    are then one row), `n_seeds`, `n_converged`, `n_stalled`, `n_oscillating`, `n_diverged`,
    `n_unknown`, the Wilson 95% intervals `stalled_rate`/`_low`/`_high` (and of oscillating
    and diverged), `epoch` (the epoch read), `n_splits`, then for `loss_at_epoch`,
    `final_loss`, `train_accuracy` and `test_accuracy` the `_median`, `_mean`, `_low` and
    `_high` (95% bootstrap interval of the mean over seeds and splits, inside the quantity's
    range) over every model with a finite value; `held_out` (whether the setting has test
    rows), `train_majority_accuracy` and `baseline_loss`.
    """
    return summarize_models(scan(frame, epoch).models)


def answer_questions(frame: pd.DataFrame, epoch: int = EPOCH_OF_INTEREST) -> Answers:
    """Answer the notebook's questions from the results, per setting when runs differ.

    QUESTION1, QUESTION2 at `epoch`, and the pre-specified secondary summaries beyond them.
    """
    return word_answers(answer_numbers(scan(frame, epoch)), plain)


def answer_summary(numbers: Mapping[str, Any]) -> dict[str, Any]:
    """The answers' key numbers, flat and JSON-safe (non-finite numbers are null).

    Per rule, `<rule> slope`, `slope low`, `slope high`, `p` (question 2's slope of the loss on
    hidden_dim, its 95% interval, p-value) and `accuracy` (question 1's median accuracy);
    prefixed by `setting <n> ` where runs differ in one.
    """
    found: dict[str, Any] = {"epoch": numbers["epoch"], "models": numbers["n_models"]}
    settings = numbers["settings"]
    for index, setting in enumerate(settings, 1):
        lead = f"setting {index} " if len(settings) > 1 else ""
        rules = setting["question1"]["rules"]
        for rule in setting["question2"]:
            slope, accuracy = rule["slope"], rules.get(rule["optimizer"], {})
            values = (slope["mean"], slope["low"], slope["high"], rule["p_value"],
                      accuracy.get("accuracy_median"))  # fmt: skip
            for key, value in zip(KEY_NUMBERS, values, strict=True):
                finite = not isinstance(value, float) or math.isfinite(value)
                found[f"{lead}{rule['optimizer']} {key}"] = value if finite else None
    return found


def report_prefix(results_path: str) -> str:
    """Return the report files' name prefix for one results file or run folder: `_<its name>`."""
    name = locations.base_name(results_path)  # a URI's query options are no part of it
    name = name[: -len(FILE_SUFFIX)] if name.endswith(FILE_SUFFIX) else name
    return "_" + name.lstrip("._")


def report_files(out_dir: str, prefix: str = REPORT_PREFIX) -> dict[str, str]:
    """Return the paths a report writes, by name: the three plots, `markdown`, `text`, `answers`."""
    return {name: locations.child(out_dir, prefix + end) for name, end in FILES.items()}


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


def written_answers(run_folder: str) -> dict[str, Any] | None:
    """Return the key numbers a run's report wrote (`-answers.json`); None where it wrote none."""
    try:
        path = report_files(run_folder, report_prefix(run_folder))["answers"]
        return json.loads(locations.read_bytes(path))
    except (OSError, ValueError):  # no report, or one by an older version
        return None


def _markdown(
    found: Scan,
    numbers: dict[str, Any],
    summary: pd.DataFrame,
    images: Mapping[str, bytes],
    comparisons: Mapping[str, Mapping[str, Any]],
) -> str:
    """The report as markdown: warnings, the two answers, the table, plots as data URIs.

    Prefect's UI renders a data URI image inside an artifact. Every value from the data is
    escaped: no HTML, no markdown syntax and no table-breaking `|` reach the report.
    """
    escaped, models = word_answers(numbers, markdown_text), found.models
    lines = ["# iris-sweep report", ""]
    for warning in [*comparison_warnings(comparisons, markdown_text), *escaped.warnings]:
        lines += [f"> **{warning}**", ""]
    if escaped.headline:
        lines += ["## Headline", "", *(f"- {line}" for line in escaped.headline), "",
                  "Definitions and details follow.", ""]  # fmt: skip
    lines += [f"## 1. {QUESTION1}", "", escaped.question1, "",
              f"## 2. {QUESTION2.format(found.epoch)}", "", escaped.question2, ""]  # fmt: skip
    if escaped.secondary:
        lines += [f"## {SECONDARY_HEADING}", "", SECONDARY_RULE, "",
                  *escaped.secondary, ""]  # fmt: skip
    if escaped.notes:
        lines += ["**Notes.** " + " ".join(escaped.notes), ""]
    lines += comparison_sections(comparisons)
    lines += [
        f"Runs: {runs_text(models, markdown_text)}. Parameters: "
        f"{run_title(models, markdown_text)}.", "", "## Summary per configuration", "",
        markdown_table(summary_text_table(summary)), "", TABLE_LEGEND, "",
    ]  # fmt: skip
    for caption, data in images.items():
        encoded = base64.b64encode(data).decode("ascii")
        lines += [f"![{markdown_text(caption)}](data:image/png;base64,{encoded})", ""]
    return "\n".join(lines)


def format_terminal(answers: Answers, summary: pd.DataFrame, epoch: int = EPOCH_OF_INTEREST) -> str:
    """Return any warnings (first, as in the markdown), the table and the answers as text."""
    table = summary_text_table(summary)
    for column in DATA_COLUMNS & set(table.columns):
        table[column] = table[column].map(plain)
    lines = [*answers.warnings, ""] if answers.warnings else []
    if answers.headline:
        lines += ["Headline:", *answers.headline, ""]
    lines += [table.to_string(index=False), "", f"1. {QUESTION1}", answers.question1, "",
              f"2. {QUESTION2.format(epoch)}", answers.question2]  # fmt: skip
    if answers.secondary:
        lines += ["", f"{SECONDARY_HEADING}:", *answers.secondary]
    if answers.notes:
        lines += ["", "Notes: " + " ".join(answers.notes)]
    return "\n".join(lines)


def _curve_table(found: Scan) -> pd.DataFrame | None:
    parts = []
    for record in groups_shown(found.models).to_dict("records"):
        band = found.curves.band(int(record["_group"]))
        if band is not None:
            keys = {c: record[c] for c in (*SETTING_COLUMNS, "hidden_dim", "optimizer")}
            parts.append(pd.DataFrame({**keys, **band}))
    return pd.concat(parts, ignore_index=True) if parts else None


def report_of(
    rows: str | pd.DataFrame,
    out_dir: str | None = None,
    run_ids: Sequence[str] | None = None,
    epoch: int = EPOCH_OF_INTEREST,
    prefix: str = REPORT_PREFIX,
) -> Report:
    """Build the report of a results location (or DataFrame), write its files, return it all.

    A location is streamed: every results file is read column by column, batch by batch,
    keeping per-model scalars and per-configuration curve aggregates, never a whole curve
    column. `run_ids` keeps only those flow runs. Files go to `out_dir` (default: the results
    folder), replacing older ones, each written atomically (`writer.write_atomically`):
    `<prefix>-loss-curves.png`, `<prefix>-accuracy.png`, `<prefix>-slope-by-epoch.png`,
    `<prefix>.md` (plots embedded), `<prefix>.txt` (the terminal text) and
    `<prefix>-answers.json` (`answer_summary`, which a run's history reads). Raises
    `ReportError` when there are no rows to report on, or `out_dir` is missing for a DataFrame.
    """
    epoch = check_epoch(epoch)
    if isinstance(rows, pd.DataFrame) and out_dir is None:
        raise ReportError("out_dir: required when the report is built from a DataFrame")
    found = scan(rows, epoch, run_ids)
    models, numbers = found.models, answer_numbers(found)
    summary, answers = summarize_models(models), word_answers(numbers, plain)
    plots = plot_loss(found), plot_accuracy(models, summary), plot_slope_by_epoch(numbers, models)
    images = dict(zip(CAPTIONS, plots, strict=True))
    comparisons = manifest_comparisons(rows)
    markdown = _markdown(found, numbers, summary, images, comparisons)
    text = format_terminal(answers, summary, found.epoch)
    if top := comparison_warnings(comparisons):  # a WARNING before everything
        text = "\n".join([*top, "", text])
    for key, compared in comparisons.items():  # the comparisons after
        lines = "\n".join(f"  {line}" for line in comparison_lines(compared))
        text += f"\n\n{COMPARISONS[key]}:\n{lines}"
    paths = report_files(out_dir if out_dir is not None else folder_of(rows), prefix)
    key_numbers = answer_summary(numbers)
    files = [*images.values(), markdown.encode(), text.encode(),
             json.dumps(key_numbers, indent=1).encode()]  # fmt: skip
    for path, data in zip(paths.values(), files, strict=True):
        folder, name = locations.split(path)
        # a link planted at a report file's name is replaced, never written through
        writer.write_atomically(folder, name, lambda stream, data=data: stream.write(data),
                                 replace=True)  # fmt: skip
    return Report(summary, answers, markdown, text, paths, _curve_table(found), key_numbers)

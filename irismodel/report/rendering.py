"""The report as text: the markdown report, the terminal text, their tables, and escaping."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from irismodel.store import locations

from .answers import Answers
from .settings import EPOCH_OF_INTEREST, SETTING_COLUMNS
from .summary import summary_text_table
from .wording import SECONDARY_RULE, word_answers

SECONDARY_HEADING = "Beyond the notebook's question (pre-specified secondary summary)"

QUESTION1 = "Is the model good, and does the hand-written update match torch.optim.SGD?"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_MARKDOWN_SYNTAX = re.compile(r"([\\`*_\[\]()!|#~])")
# Columns of the summary table whose values come from the data, not from the report's numbers.
_DATA_COLUMNS = frozenset({*SETTING_COLUMNS, "optimizer"})


def question2(epoch: int) -> str:
    """Question 2's heading."""
    return f"Does the loss at epoch {epoch} fall as hidden_dim grows?"


def plain(value: Any) -> str:
    """A value from the data as one line: control characters (newlines, escapes) become spaces."""
    return _CONTROL.sub(" ", str(value))


def plot_text(value: Any) -> str:
    """A value from the data for a plot: one line, and `$` kept from starting matplotlib math."""
    return plain(value).replace("$", r"\$")


def markdown_text(value: Any) -> str:
    """A value from the data, inert in markdown: one line, HTML and markdown syntax escaped."""
    return html.escape(_MARKDOWN_SYNTAX.sub(r"\\\1", plain(value)))


def markdown_cell(value: Any) -> str:
    """A cell the report wrote itself: HTML escaped, pipes escaped, one line."""
    return html.escape(plain(value)).replace("|", "\\|")


def markdown_table(table: pd.DataFrame) -> str:
    """A table as markdown, values from the data escaped, every row as many cells as the header."""
    header = "| " + " | ".join(markdown_cell(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    cells = [markdown_text if c in _DATA_COLUMNS else markdown_cell for c in table.columns]
    body = [
        "| " + " | ".join(cell(v) for cell, v in zip(cells, row, strict=True)) + " |"
        for row in table.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body])


def run_title(frame: pd.DataFrame, clean: Callable[[Any], str] = plain) -> str:
    """A line naming the run(s) and their parameters."""
    runs = frame["flow_run_id"].unique()
    parts = [
        f"run {clean(str(runs[0])[:8])}" if len(runs) == 1 else f"{len(runs)} runs",
        f"{frame['seed'].nunique()} seeds",
    ]
    for column, fmt in (("learning_rate", "lr={:g}"), ("epochs", "epochs={}"),
                        ("test_size", "test_size={:g}")):  # fmt: skip
        values = pd.unique(frame[column].to_numpy())
        parts.append(fmt.format(values[0]) if len(values) == 1 else f"{column} varies")
    return ", ".join(parts)


def runs_text(frame: pd.DataFrame, clean: Callable[[Any], str] = plain, most: int = 20) -> str:
    """The runs reported on: id, start, models and status, the first `most` of them."""
    runs = frame.groupby("flow_run_id", sort=False, observed=True).agg(
        started=("run_started_at", "first"), status=("run_status", "first"), rows=("seed", "size")
    )
    runs = runs.sort_values("started")
    parts = [
        f"{clean(run)} ({row.started:%Y-%m-%d %H:%M} UTC, {row.rows} models, {clean(row.status)})"
        for run, row in runs.head(most).iterrows()
    ]
    if len(runs) > most:
        parts.append(f"and {len(runs) - most} more runs")
    return "; ".join(parts)


def _markdown_answers(answers: Answers) -> Answers:
    """The answers worded with every value from the data escaped for markdown."""
    try:
        return word_answers(answers.numbers, markdown_text)
    except (KeyError, TypeError, AttributeError, IndexError):  # answers built by hand
        return Answers(
            html.escape(answers.question1),
            html.escape(answers.question2),
            notes=[html.escape(plain(note)) for note in answers.notes],
            warnings=[html.escape(plain(line)) for line in answers.warnings],
            headline=[html.escape(plain(line)) for line in answers.headline],
            secondary=[html.escape(plain(line)) for line in answers.secondary],
        )


TABLE_LEGEND = (
    "Per configuration: models (seeds x splits), then how many converged / stalled / "
    "oscillating / diverged; the stalled rate with its 95% Wilson interval; the median model "
    "and the mean with its 95% bootstrap interval over seeds and splits, over every model with "
    "a finite value. Epochs are 1-based: the loss of epoch e is `loss_curve[e - 1]`."
)


def render_markdown(
    frame: pd.DataFrame,
    answers: Answers,
    summary: pd.DataFrame,
    images: Mapping[str, str | bytes] | None = None,
    epoch: int = EPOCH_OF_INTEREST,
) -> str:
    """Return the report as markdown: warnings, the two answers, the table, plots as data URIs.

    `images` maps a caption to a PNG path or PNG bytes; each is embedded as
    `![caption](data:image/png;base64,...)`, which Prefect's UI renders inside an artifact.
    Every value taken from the data (run ids, class names, optimizers) is escaped: no HTML, no
    markdown syntax and no table-breaking `|` reach the report from the results.
    """
    escaped = _markdown_answers(answers)
    lines = ["# iris-sweep report", ""]
    for warning in escaped.warnings:
        lines += [f"> **{warning}**", ""]
    if escaped.headline:
        lines += ["## Headline", "", *(f"- {line}" for line in escaped.headline), "",
                  "Definitions and details follow.", ""]  # fmt: skip
    lines += [f"## 1. {QUESTION1}", "", escaped.question1, "",
              f"## 2. {question2(epoch)}", "", escaped.question2, ""]  # fmt: skip
    if escaped.secondary:
        lines += [f"## {SECONDARY_HEADING}", "", SECONDARY_RULE, "", *escaped.secondary, ""]
    if escaped.notes:
        lines += ["**Notes.** " + " ".join(escaped.notes), ""]
    lines += [
        f"Runs: {runs_text(frame, markdown_text)}. Parameters: {run_title(frame, markdown_text)}.",
        "",
        "## Summary per configuration",
        "",
        markdown_table(summary_text_table(summary)),
        "",
        TABLE_LEGEND,
        "",
    ]
    for caption, image in (images or {}).items():
        data = image if isinstance(image, bytes) else locations.read_bytes(image)
        encoded = base64.b64encode(data).decode("ascii")
        lines += [f"![{markdown_text(caption)}](data:image/png;base64,{encoded})", ""]
    return "\n".join(lines)


def format_terminal(answers: Answers, summary: pd.DataFrame, epoch: int = EPOCH_OF_INTEREST) -> str:
    """Return any warnings (first, as in the markdown), the table and the answers as text."""
    table = summary_text_table(summary)
    for column in _DATA_COLUMNS & set(table.columns):
        table[column] = table[column].map(plain)
    lines = [*answers.warnings, ""] if answers.warnings else []
    if answers.headline:
        lines += ["Headline:", *answers.headline, ""]
    lines += [
        table.to_string(index=False),
        "",
        f"1. {QUESTION1}",
        answers.question1,
        "",
        f"2. {question2(epoch)}",
        answers.question2,
    ]
    if answers.secondary:
        lines += ["", f"{SECONDARY_HEADING}:", *answers.secondary]
    if answers.notes:
        lines += ["", "Notes: " + " ".join(answers.notes)]
    return "\n".join(lines)

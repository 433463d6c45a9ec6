"""Values as text: escaped for terminal, markdown and plots; numbers, tables and runs in words."""

import html
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from .settings import SETTING_COLUMNS

Clean = Callable[[Any], str]  # renders a value taken from the data: `plain` or `markdown_text`
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_MARKDOWN_SYNTAX = re.compile(r"([\\`*_\[\]()!|#~])")
SECONDARY = "beyond the notebook's question (pre-specified secondary summary)"
# Columns of the summary table whose values come from the data, not from the report's numbers.
DATA_COLUMNS = frozenset({*SETTING_COLUMNS, "optimizer"})


def plain(value: Any) -> str:
    """A value from the data as one line: control characters (newlines, escapes) become spaces."""
    return _CONTROL.sub(" ", str(value))


def plot_text(value: Any) -> str:
    """A value from the data for a plot: one line, and `$` kept from starting matplotlib math."""
    return plain(value).replace("$", r"\$")


def markdown_text(value: Any) -> str:
    """A value from the data, inert in markdown: one line, HTML and markdown syntax escaped."""
    return html.escape(_MARKDOWN_SYNTAX.sub(r"\\\1", plain(value)))


def _markdown_cell(value: Any) -> str:
    """A cell the report wrote itself: HTML escaped, pipes escaped, one line."""
    return html.escape(plain(value)).replace("|", "\\|")


def no_number(value: float, digits: int = 3) -> str:
    """A number, or `n/a`."""
    return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"


def p_text(p: float) -> str:
    """`p = 0.042`, `p < 0.001` or `p undefined`."""
    if not math.isfinite(p):
        return "p undefined"
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}" if p < 0.01 else f"p = {p:.3f}"


def models_text(n: int) -> str:
    """`1 model`, `2 models`."""
    return f"{n} model" if n == 1 else f"{n} models"


def rate_text(rate: float, low: float, high: float) -> str:
    """`12% [5%, 25%]`, or `unknown`."""
    if not math.isfinite(rate):
        return "unknown"
    # whole percents, or two significant digits below 1%
    percent = [f"{s:.0%}" if s == 0 or s >= 0.01 else f"{100 * s:.2g}%" for s in (rate, low, high)]
    return f"{percent[0]} [{percent[1]}, {percent[2]}]"


def rate_of(record: Mapping[str, Any], name: str) -> str:
    """`rate_text` of the `<name>_rate`, `_low` and `_high` of `record`."""
    return rate_text(record[f"{name}_rate"], record[f"{name}_low"], record[f"{name}_high"])


def interval_text(mean: float, low: float, high: float, digits: int = 3) -> str:
    """`mean [low, high]`, `mean (one seed, no interval)` or `n/a`."""
    if not math.isfinite(mean):
        return "n/a"
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{mean:.{digits}f} (one seed, no interval)"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def interval_words(values: Mapping[str, Any], digits: int = 3) -> str:
    """`mean [low, high] (95% interval over N seeds x M splits)`."""
    text = interval_text(values["mean"], values["low"], values["high"], digits)
    return f"{text} (95% interval {values['covers']})" if values["n"] > 1 else text


def setting_label(setting: Mapping[str, Any], clean: Clean) -> str:
    """The parameters that make a setting, as `name=value, ...`."""
    return (
        f"learning_rate={setting['learning_rate']:g}, epochs={setting['epochs']}, "
        f"test_size={setting['test_size']:g}, standardize={str(setting['standardize']).lower()}, "
        f"positive_class={clean(setting['positive_class'])}"
    )


def run_title(frame: pd.DataFrame, clean: Clean = plain) -> str:
    """A line naming the run(s) and their parameters."""
    runs = frame["flow_run_id"].unique()
    first = f"run {clean(str(runs[0])[:8])}" if len(runs) == 1 else f"{len(runs)} runs"
    parts = [first, f"{frame['seed'].nunique()} seeds"]
    for column, fmt in (("learning_rate", "lr={:g}"), ("epochs", "epochs={}"),
                        ("test_size", "test_size={:g}")):  # fmt: skip
        values = pd.unique(frame[column].to_numpy())
        parts.append(fmt.format(values[0]) if len(values) == 1 else f"{column} varies")
    return ", ".join(parts)


def runs_text(frame: pd.DataFrame, clean: Clean, most: int = 20) -> str:
    """The runs reported on: id, start, models and status, the first `most` of them."""
    runs = frame.groupby("flow_run_id", sort=False, observed=True).agg(
        started=("run_started_at", "first"), status=("run_status", "first"), rows=("seed", "size")
    )
    parts = [
        f"{clean(run)} ({row.started:%Y-%m-%d %H:%M} UTC, {row.rows} models, {clean(row.status)})"
        for run, row in runs.sort_values("started").head(most).iterrows()
    ]
    if len(runs) > most:
        parts.append(f"and {len(runs) - most} more runs")
    return "; ".join(parts)


def markdown_table(table: pd.DataFrame) -> str:
    """A table as markdown, values from the data escaped, every row as many cells as the header."""
    header = "| " + " | ".join(_markdown_cell(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    cells = [markdown_text if c in DATA_COLUMNS else _markdown_cell for c in table.columns]
    body = [
        "| " + " | ".join(cell(v) for cell, v in zip(cells, row, strict=True)) + " |"
        for row in table.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body])

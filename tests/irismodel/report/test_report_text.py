"""Values as text: data cannot inject HTML or markdown, break a table, or start plot math."""

import math
import re

import pandas as pd
from report_runs import MAIN, rows_of

from irismodel import report
from irismodel.report.text import (
    interval_text,
    markdown_text,
    p_text,
    plain,
    plot_text,
    rate_text,
)


def test_each_escape_makes_a_value_inert_where_it_goes():
    """One line for the terminal, no HTML or markdown syntax in markdown, no `$` math in plots."""
    value = "<b>x</b>|*y*\n`z`$"
    assert plain(value) == "<b>x</b>|*y* `z`$"
    assert markdown_text(value) == "&lt;b&gt;x&lt;/b&gt;\\|\\*y\\* \\`z\\`$"
    assert plot_text(value) == "<b>x</b>|*y* `z`\\$"


def test_numbers_read_as_numbers_or_say_why_not():
    """Intervals, rates and p-values in words; a missing one says so instead of `nan`."""
    assert interval_text(0.5, 0.4, 0.6) == "0.500 [0.400, 0.600]"
    assert interval_text(0.5, math.nan, math.nan) == "0.500 (one seed, no interval)"
    assert interval_text(math.nan, 0.1, 0.2) == "n/a"
    assert rate_text(0.0036, 0.00063, 0.02) == "0.36% [0.063%, 2%]"
    assert rate_text(math.nan, 0, 0) == "unknown"
    assert (p_text(0.0004), p_text(0.004), p_text(0.04), p_text(math.nan)) == (
        "p < 0.001", "p = 0.004", "p = 0.040", "p undefined"
    )  # fmt: skip


def test_values_from_the_data_cannot_inject_html_or_break_the_table(frame, tmp_path):
    """A class name and a run id holding HTML, a pipe and a newline reach the markdown escaped:
    no raw tag, and every table row has as many cells as the header."""
    evil = "<img src=x onerror=alert(1)>|x"
    rows = rows_of(frame, MAIN)
    other = rows.assign(
        positive_class=evil,
        flow_run_id="<b>run</b>|\nx",
        run_started_at=rows.run_started_at + pd.Timedelta(hours=1),
    )
    built = report.report_of(pd.concat([rows, other], ignore_index=True), str(tmp_path))
    markdown = built.markdown
    assert "<img" not in markdown and "<b>" not in markdown and "|\nx" not in markdown
    assert "&lt;img src=x onerror=alert\\(1\\)&gt;\\|x" in markdown
    table = [line for line in markdown.splitlines() if line.startswith("|")]
    cells = len(re.split(r"(?<!\\)\|", table[0]))
    assert len(table) == 2 + 12  # 3 hidden_dims x (sgd = manual, no-zero-grad) x 2 settings
    for line in table:
        assert len(re.split(r"(?<!\\)\|", line)) == cells
    assert sum("\\|x" in line for line in table) == 6
    assert "positive_class=&lt;img" in markdown  # the answers name the setting, escaped
    assert evil in built.text  # the terminal shows the value as it is, on one line
    # matplotlib reads $...$ as math: a class named like broken math still plots
    broken = other.assign(positive_class="$\\frac{$", flow_run_id="run-$")
    report.report_of(pd.concat([rows, broken], ignore_index=True), str(tmp_path), prefix="_m")

"""The run report: outcomes, the notebook's two questions answered with statistics, plots, text.

Modules: `reading` streams the part files, `scan` reads them in two passes, `curves` holds the
per-epoch aggregates, `baselines` the majority class and outcomes, `statistics` the intervals
and the blocked trend test, `summary` the per-configuration table, `reference` the check
against the notebook's loop, `answers` and `wording` the two answers, `plots`, `rendering`
(markdown, terminal, escaping), `build` (a report from a location or frame) and `cli`.
"""

from .answers import Answers
from .baselines import majority_accuracy
from .build import (
    Report,
    answer_questions,
    build_report,
    folder_of,
    plot_loss_curves,
    plot_test_accuracy,
    report_files,
    report_of,
    report_prefix,
    summarize,
    write_report,
    written_text,
)
from .cli import build_parser, main
from .rendering import format_terminal, render_markdown
from .scan import epoch_used, loss_at_epoch
from .settings import (
    CONFIDENCE,
    EPOCH_OF_INTEREST,
    OPTIMIZER_ORDER,
    REFERENCE_TOLERANCE,
    REPORT_PREFIX,
    SETTING_COLUMNS,
    ReportError,
    varying_settings,
)
from .statistics import Interval, mean_interval, rate_interval
from .summary import summary_table, summary_text_table

__all__ = [
    "CONFIDENCE",
    "EPOCH_OF_INTEREST",
    "OPTIMIZER_ORDER",
    "REFERENCE_TOLERANCE",
    "REPORT_PREFIX",
    "SETTING_COLUMNS",
    "Answers",
    "Interval",
    "Report",
    "ReportError",
    "answer_questions",
    "build_parser",
    "build_report",
    "epoch_used",
    "folder_of",
    "format_terminal",
    "loss_at_epoch",
    "main",
    "majority_accuracy",
    "mean_interval",
    "plot_loss_curves",
    "plot_test_accuracy",
    "rate_interval",
    "render_markdown",
    "report_files",
    "report_of",
    "report_prefix",
    "summarize",
    "summary_table",
    "summary_text_table",
    "varying_settings",
    "write_report",
    "written_text",
]

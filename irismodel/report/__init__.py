"""The run report: outcomes, the notebook's two questions answered with statistics, plots, text.

`scan` reads the rows into one row per model and per-epoch `curves`; `statistics`, `summary`,
`answers` and `reference` make the numbers; `wording` and `text` the words; `plots` the PNGs;
`build` the report's files and the `iris-sweep-report` command line.
"""

from .answers import Answers
from .build import (
    REPORT_PREFIX,
    Report,
    answer_questions,
    build_parser,
    folder_of,
    format_terminal,
    main,
    report_files,
    report_of,
    report_prefix,
    summarize,
    written_text,
)
from .settings import EPOCH_OF_INTEREST, ReportError
from .summary import summary_table, summary_text_table
from .text import markdown_text

__all__ = [
    "EPOCH_OF_INTEREST",
    "REPORT_PREFIX",
    "Answers",
    "Report",
    "ReportError",
    "answer_questions",
    "build_parser",
    "folder_of",
    "format_terminal",
    "main",
    "markdown_text",
    "report_files",
    "report_of",
    "report_prefix",
    "summarize",
    "summary_table",
    "summary_text_table",
    "written_text",
]

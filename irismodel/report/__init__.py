"""The run report: outcomes, the notebook's two questions answered with statistics, plots, text."""

from .answers import Answers
from .build import (
    Report,
    answer_questions,
    format_terminal,
    report_files,
    report_of,
    report_prefix,
    summarize,
    written_text,
)
from .command import build_parser, main
from .settings import EPOCH_OF_INTEREST, ReportError
from .summary import summary_table, summary_text_table
from .text import markdown_text

__all__ = [
    "EPOCH_OF_INTEREST",
    "Answers",
    "Report",
    "ReportError",
    "answer_questions",
    "build_parser",
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

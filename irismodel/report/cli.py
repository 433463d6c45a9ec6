"""The `iris-sweep-report` command line (also `python -m irismodel.report`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .build import report_of
from .settings import EPOCH_OF_INTEREST, REPORT_PREFIX


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
    except (ValueError, OSError) as error:  # ReportError, ResultsError, locations, --out
        print(f"iris-sweep-report: error: {error}", file=sys.stderr)
        return 2
    print(report.text)
    print()
    for name in ("loss_curves", "accuracy", "slope_by_epoch", "markdown"):
        print(f"{name.replace('_', ' ')}: {report.paths[name]}")
    return 0

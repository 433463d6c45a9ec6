"""The report's command line: `python -m irismodel.report` and `iris-sweep-report`."""

import argparse
import sys
from collections.abc import Sequence

from irismodel import compare

from .build import report_of
from .comparison import compare_folders
from .settings import EPOCH_OF_INTEREST


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of `python -m irismodel.report` / `iris-sweep-report`."""
    parser = argparse.ArgumentParser(
        prog="iris-sweep-report",
        description="Rebuild the summary, the two answers and the plots from past iris-sweep "
        "runs' Parquet results.",
    )
    parser.add_argument(
        "location", metavar="RESULTS_LOCATION", nargs="?", help="folder, file or URI"
    )
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
    parser.add_argument(
        "--compare", nargs=2, metavar=("RUN_A", "RUN_B"),
        help="instead of a report, compare run folder RUN_B with run folder RUN_A: what changed "
        "in environment, data, parameters and rows (exit 1 on a WARNING)",
    )  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Print the summary and the answers; write plots and report files. Exit 2 on bad input.

    With `--compare RUN_A RUN_B`, print the comparison: exit 0, or 1 on a WARNING, 2 on bad input.
    """
    args = build_parser().parse_args(argv)
    try:
        if args.compare and (args.location or args.runs or args.out):
            raise ValueError(
                "--compare: give two run folders and nothing else "
                "(no RESULTS_LOCATION, --run or --out)"
            )
        if args.compare:
            compared = compare_folders(*args.compare)
            print(compared.text())
            return 1 if compared.verdict == compare.WARNING else 0
        if args.location is None:
            raise ValueError("RESULTS_LOCATION: required (or --compare RUN_A RUN_B)")
        report = report_of(args.location, args.out, args.runs, args.epoch)
    except (ValueError, OSError) as error:  # ReportError, ResultsError, locations, --out
        print(f"iris-sweep-report: error: {error}", file=sys.stderr)
        return 2
    print(report.text)
    print()
    for name in ("loss_curves", "accuracy", "slope_by_epoch", "markdown"):
        print(f"{name.replace('_', ' ')}: {report.paths[name]}")
    return 0

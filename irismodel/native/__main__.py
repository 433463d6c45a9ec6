"""Command line of the compiled loops: `python -m irismodel.native build|status`."""

import argparse
import sys
import time

from irismodel import native
from irismodel.native.build import build, how_to_fix, unavailable_reason


def main(argv: list[str] | None = None) -> int:
    """Build the C++ loops ahead of time (a pre-warm), or say whether they are built and load."""
    parser = argparse.ArgumentParser(prog="python -m irismodel.native", description=__doc__)
    parser.add_argument("command", choices=["build", "status"])
    parser.add_argument("--verbose", action="store_true", help="show the compiler's output")
    args = parser.parse_args(argv)
    if args.command == "build":
        start = time.perf_counter()
        path = build(verbose=args.verbose)
        print(f"built {path} in {time.perf_counter() - start:.1f} s")
        return 0
    if (reason := unavailable_reason()) is None:
        print(f"built and loads: {native.library_path()}")
        return 0
    print(f"{reason}; {how_to_fix()}")
    return 1


if __name__ == "__main__":
    sys.exit(main())

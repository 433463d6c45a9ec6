"""Command line of the compiled loops: `python -m irismodel.native build|status`."""

from __future__ import annotations

import argparse
import os
import sys

from irismodel import native


def main(argv: list[str] | None = None) -> int:
    """Build the C++ loop ahead of time (a pre-warm), or say whether it is built and loads."""
    parser = argparse.ArgumentParser(prog="python -m irismodel.native", description=__doc__)
    parser.add_argument("command", choices=["build", "status"])
    parser.add_argument("--verbose", action="store_true", help="show the compiler's output")
    args = parser.parse_args(argv)
    if args.command == "build":
        path, seconds = native.timed_build(verbose=args.verbose)
        print(f"built {path} in {seconds:.1f} s")
        return 0
    path = native.library_path()
    if native.load() is not None:
        print(f"built and loads: {path}")
        return 0
    state = "built but does not load" if path.is_file() else "not built"
    when = (
        "will be built on first use"
        if native.build_on_first_use()
        else (f"will not be built on first use ({native.BUILD_ENV}={os.environ[native.BUILD_ENV]})")
    )
    print(f"{state}: {path}; it {when}; to build it now, run `{native.BUILD_COMMAND}`")
    return 1


if __name__ == "__main__":
    sys.exit(main())

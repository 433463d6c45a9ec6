"""Command line for ad hoc sweeps: `iris-sweep --hidden-dims 8 9 --seeds 0..9` runs the flow."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

from irismodel import native
from irismodel.config import SweepConfig, check_data, validate_config
from irismodel.engine import request_stop, stop_requested
from irismodel.estimate import check_fits, estimate
from irismodel.optimizers import OPTIMIZERS
from irismodel.runs import resumed_config
from irismodel.storage import redact

DEFAULTS = SweepConfig()


def _int_items(values: Sequence[str]) -> list[int]:
    """Parse integers and inclusive ranges: `8 9 10` or `8..14`."""
    out: list[int] = []
    for value in values:
        for item in value.replace(",", " ").split():
            if ".." in item:
                low, high = item.split("..", 1)
                out.extend(range(int(low), int(high) + 1))
            else:
                out.append(int(item))
    return out


def _positive_class(value: str) -> str | int:
    return int(value) if value.lstrip("-").isdigit() else value


def build_parser() -> argparse.ArgumentParser:
    """Return the parser: one option per flow parameter, with the flow's defaults."""
    parser = argparse.ArgumentParser(
        prog="iris-sweep",
        description="Train a 4-h-1 ReLU network on Iris (one class against the rest) for every "
        "hidden_dim x optimizer x seed and write the results to Parquet.",
    )
    add = parser.add_argument
    add(
        "--hidden-dims",
        nargs="+",
        default=None,
        metavar="N",
        help="e.g. 8 9 10 or 8..14 (default 8..14)",
    )
    add(
        "--optimizers",
        nargs="+",
        default=list(DEFAULTS.optimizers),
        metavar="NAME",
        help=f"of {', '.join(OPTIMIZERS)} (default sgd manual)",
    )
    add("--seeds", nargs="+", default=None, metavar="S", help="e.g. 0 1 2 or 0..9 (default 0..9)")
    add("--learning-rate", type=float, default=DEFAULTS.learning_rate)
    add("--epochs", type=int, default=DEFAULTS.epochs)
    add(
        "--test-size",
        type=float,
        default=DEFAULTS.test_size,
        help="0 trains and evaluates on all rows",
    )
    add("--split-seed", type=int, default=DEFAULTS.split_seed)
    add("--standardize", action=argparse.BooleanOptionalAction, default=DEFAULTS.standardize)
    add(
        "--positive-class",
        type=_positive_class,
        default=DEFAULTS.positive_class,
        help="class name or index",
    )
    add(
        "--data-path",
        default=DEFAULTS.data_path,
        help="CSV or Parquet file (default: bundled Iris)",
    )
    add("--device", default=DEFAULTS.device, help="auto, cpu, cuda or cuda:N")
    add("--output-dir", default=DEFAULTS.output_dir, help="folder or pyarrow.fs URI")
    add(
        "--shard-size",
        type=int,
        default=DEFAULTS.shard_size,
        metavar="N",
        help="seeds per shard task (default: as many as keep a shard's loss curves within "
        "8 MB: 2,000 seeds at 1,000 epochs; at most 10,000)",
    )
    add(
        "--resume",
        default=None,
        metavar="RUN_ID",
        help="finish the unfinished run RUN_ID in --output-dir (its own parameters are used): "
        "only its missing shards are trained",
    )
    add(
        "--report",
        action=argparse.BooleanOptionalAction,
        default=DEFAULTS.report,
        help="make the report once the results are published (--no-report: make it later "
        "with iris-sweep-report)",
    )
    add(
        "--force",
        action="store_true",
        help="start even if the forecast says the disk or memory is too small",
    )
    return parser


def parse_parameters(argv: Sequence[str] | None = None) -> dict:
    """Return the flow parameters given on the command line."""
    args = build_parser().parse_args(argv)
    try:
        hidden_dims = (
            _int_items(args.hidden_dims) if args.hidden_dims else list(DEFAULTS.hidden_dims)
        )
        # seeds stay text (`0..71428`): a million seeds need not become a list on the way
        seeds = (
            ", ".join(" ".join(args.seeds).replace(",", " ").split())
            if args.seeds
            else (DEFAULTS.seed_set.text())
        )
    except ValueError as error:
        build_parser().error(f"hidden_dims and seeds take integers or ranges like 8..14 ({error})")
    return {
        "hidden_dims": hidden_dims,
        "optimizers": args.optimizers,
        "seeds": seeds,
        "learning_rate": args.learning_rate,
        "epochs": args.epochs,
        "test_size": args.test_size,
        "split_seed": args.split_seed,
        "standardize": args.standardize,
        "positive_class": args.positive_class,
        "data_path": args.data_path,
        "device": args.device,
        "output_dir": args.output_dir,
        "shard_size": args.shard_size,
        "resume": args.resume,
        "force": args.force,
        "report": args.report,
    }


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Ctrl-C stops training at its next epoch; a second Ctrl-C stops waiting at once.

    SIGTERM stops training too and exits with 143 at once (the server stops on the way out).

    The first SIGINT asks every training in this process to stop (`request_stop`): running
    shards end within an epoch, none is retried or started, the shards already written stay
    for a resume, and the run ends unpublished. A second SIGINT ends the process at once.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_interrupt(signum: int, frame: object) -> None:
        if stop_requested():
            # Not KeyboardInterrupt: an interpreter shutting down under running training
            # threads can abort in C++. Written shards are whole; the server dies with us.
            print("\niris-sweep: stopped at once", file=sys.stderr, flush=True)
            os._exit(130)
        request_stop()
        print(
            "\niris-sweep: stopping: the running shards end at their next epoch and the written "
            "ones are kept (Ctrl-C again to stop waiting)",
            file=sys.stderr,
        )

    def on_terminate(signum: int, frame: object) -> None:
        request_stop()  # running shards end within an epoch instead of holding the exit
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    previous_term = signal.signal(signal.SIGTERM, on_terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)


def main(argv: Sequence[str] | None = None) -> int:
    """Validate the options, run the flow, print where the results are and a summary."""
    parameters = parse_parameters(argv)
    try:
        config = validate_config(**parameters)
        if config.resume:
            config = resumed_config(config)
        check_data(config)  # fail in seconds, before Prefect starts
        forecast = estimate(config, compiled=native.load() is not None)
        check_fits(config, forecast, config.force)
    except ValueError as error:
        print(f"iris-sweep: error: {error}", file=sys.stderr)
        return 2

    print(f"iris-sweep: {forecast.text()}", file=sys.stderr)
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    from flows.drain import drain_clients, register_temporary
    from flows.iris_sweep import SweepFailed, iris_sweep
    from flows.server import check_api, temporary_server
    from irismodel.report import written_text

    with contextlib.ExitStack() as stack:
        url = get_current_settings().api.url
        if url:
            try:
                check_api(url)
            except RuntimeError as error:
                print(error, file=sys.stderr)
                return 2
        else:
            # Our own temporary server, not Prefect's: it dies with this process, even when
            # the process is killed (SIGKILL, OOM, `timeout`), and SIGTERM unwinds through here.
            try:
                url = stack.enter_context(temporary_server())
            except RuntimeError as error:
                home = os.environ.get("PREFECT_HOME", "~/.prefect")
                print(
                    f"iris-sweep: error: the temporary Prefect server did not start; check that "
                    f"PREFECT_HOME ({home}) is a writable folder. "
                    f"{str(error).splitlines()[0]}",
                    file=sys.stderr,
                )
                return 2
            register_temporary(url)
            stack.enter_context(temporary_settings(updates={PREFECT_API_URL: url}))
            stack.callback(drain_clients)  # runs first on the way out: before the server stops
        stack.enter_context(_interruptible())
        try:
            path = iris_sweep(**parameters)
        except SweepFailed as error:
            if stop_requested():
                print(f"iris-sweep: interrupted. {error}", file=sys.stderr)
                return 130
            print(f"iris-sweep: error: {error}", file=sys.stderr)
            return 1
    if parameters["report"]:
        try:
            print(written_text(path))  # the summary the flow's report task wrote
        except OSError:
            print("(no report: see the run's log for why it could not be made)")
    print(f"\nresults: {redact(path)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Command line for ad hoc sweeps: `iris-sweep --hidden-dims 8 9 --seeds 0..9` runs the flow."""

import argparse
import contextlib
import os
import posixpath
import re
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from cli.signals import interruptible, stop_on_sigterm
from irismodel.engine import stop_requested
from irismodel.parameters import form_defaults, run_form
from irismodel.preflight import handed_over, preflight
from irismodel.store import RunError, list_result_files
from irismodel.store.locations import first_line, redact
from irismodel.store.runs import run_folders

_INTEGER = re.compile(r"-?[0-9]+")
_NUMBER = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?|[-+]?(inf|nan)", re.I)


def _integer(value: str) -> int | str:
    """An integer in ASCII digits; other text (`1_000`, `٣`) stays text, to be refused."""
    return int(value) if _INTEGER.fullmatch(value.strip()) else value


def _number(value: str) -> float | str:
    """A number in ASCII digits (`0.1`, `1e-3`, `inf`); other text stays text, to be refused."""
    return float(value) if _NUMBER.fullmatch(value.strip()) else value


class _Parser(argparse.ArgumentParser):
    """Errors in one line, as every other refusal: `iris-sweep: error: epochs: ...`."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        # `--seeds -1..3` is a value (for validation to refuse by name), not an unknown option
        self._negative_number_matcher = re.compile(r"^-[0-9]")

    def error(self, message: str) -> NoReturn:
        message = re.sub(r"^argument --([\w-]+)(?:/--no-[\w-]+)?: ", _parameter_name, message)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parameter_name(match: re.Match[str]) -> str:
    return match.group(1).replace("-", "_") + ": "


def _options(form: dict[str, Any]) -> dict[str, Any]:
    """Return how the command line reads one parameter, from its run-form schema.

    Readers only turn text into the type the parameter takes; `SweepConfig` checks every value.
    """
    kinds = [kind.get("type") for kind in form.get("anyOf", [form])]
    if "array" in kinds:  # repeatable: --seeds 0..9 --seeds 20 sweeps both
        ranges = "string" in kinds
        return {"nargs": "+", "action": "extend", "metavar": "N|A..B" if ranges else "NAME"}
    if kinds == ["boolean"]:
        return {"action": argparse.BooleanOptionalAction}
    if "integer" in kinds:  # positive_class too: a code is an integer, a name stays text
        return {"type": _integer}
    return {"type": _number if "number" in kinds else str}


def build_parser() -> argparse.ArgumentParser:
    """Return the parser: one option per sweep parameter, made from `SweepConfig`'s run form."""
    parser = _Parser(
        prog="iris-sweep",
        description="Train a 4-h-1 ReLU network on Iris (one class against the rest) for every "
        "hidden_dim x optimizer x seed and write the results to Parquet.",
    )
    for name, form in run_form().items():
        default = form["default"]
        shown = " ".join(map(str, default)) if isinstance(default, list) else default
        shown = "" if default is None else f" (default: {shown})"
        help_text = (form["description"] + shown).replace("%", "%%")
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, dest=name, default=None, help=help_text, **_options(form))
    return parser


def parse_parameters(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Return the flow parameters given on the command line, the defaults for the rest.

    hidden_dims and seeds stay text (`0..71428`): a million seeds need not become a list.
    """
    given = vars(build_parser().parse_args(argv))
    forms, parameters = run_form(), form_defaults()
    for name, value in given.items():
        if value is None:
            continue
        if "anyOf" in forms[name] and isinstance(value, list):  # ranges: one text
            # as from Python: `0 .. 9` is one range, spaces around `..` allowed
            joined = re.sub(r"\s*\.\.\s*", "..", " ".join(value).replace(",", " "))
            value = ", ".join(joined.split())
        parameters[name] = value
    return parameters


def main(argv: Sequence[str] | None = None) -> int:
    """Check the run (its pre-flight), run the flow on that check, print the summary and folder."""
    parameters = parse_parameters(argv)
    try:  # the run's pre-flight, in seconds, before Prefect starts; the flow takes its result
        checked = preflight(parameters, starting=True, temporary_server=_no_api_named)
    except ValueError as error:
        print(f"iris-sweep: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # A store that never answers holds a thread inside its client, and an orderly exit
        # waits for it (pyarrow's finalizers). Nothing is written yet: leave at once.
        print("\niris-sweep: interrupted; nothing was started", file=sys.stderr, flush=True)
        os._exit(130)

    config = checked.config
    print(f"iris-sweep: {checked.forecast.text()}", file=sys.stderr)
    from prefect.settings import get_current_settings

    from cli.server import check_api, client_settings, temporary_server, wait_until_recorded
    from flows.iris_sweep import iris_sweep
    from irismodel.report import written_text
    from tasks.results import SweepFailed

    started: dict[str, str] = {}  # the flow run's id, from the moment it runs

    def note_flow_run(flow, flow_run, state) -> None:  # a Prefect flow hook
        started["id"] = str(flow_run.id)
        stop_on_sigterm()  # in place of Prefect's, which the engine has just set

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
            stack.enter_context(client_settings(url))
            # first on the way out: the server records the flow run before it stops
            stack.callback(lambda: wait_until_recorded(started.get("id")))
        terminated = stack.enter_context(interruptible())
        stack.enter_context(handed_over(checked))
        try:
            path = iris_sweep.with_options(on_running=[note_flow_run])(**parameters)
        except SweepFailed as error:
            if terminated.is_set():  # SIGTERM during the run (`stop_on_sigterm`)
                hint = _resume_hint(config.output_dir, config.resume or started.get("id"), " ")
                print(f"\niris-sweep: terminated.{hint}", file=sys.stderr, flush=True)
                return 128 + int(signal.SIGTERM)
            if stop_requested():
                print(f"iris-sweep: interrupted. {error}", file=sys.stderr)
                return 130
            print(f"iris-sweep: error: {error}", file=sys.stderr)
            return 1
        except SystemExit:  # SIGTERM: the written shards stay for a resume
            if hint := _resume_hint(config.output_dir, config.resume or started.get("id")):
                print(f"\niris-sweep: terminated. {hint}", file=sys.stderr, flush=True)
            raise
        except Exception as error:
            run_id = config.resume or started.get("id")
            published = _published(config.output_dir, run_id)
            if published:  # the results are whole; what failed after them is no error
                print(
                    f"iris-sweep: warning: the run is published, but then: {first_line(error)}",
                    file=sys.stderr,
                )
                path = published
            else:
                hint = _resume_hint(config.output_dir, run_id, " ")
                print(f"iris-sweep: error: {first_line(error)}{hint}", file=sys.stderr)
                return 2 if isinstance(error, RunError) else 1
    if terminated.is_set():  # after training: publication (and the report) went on to the end
        print(f"\niris-sweep: terminated after the run was published\n\nresults: {redact(path)}")
        return 128 + int(signal.SIGTERM)
    if checked.config.report:
        try:
            print(written_text(path))  # the summary the flow's report task wrote
        except Exception:  # the results are published: a missing report is no failure
            print("(no report: see the run's log for why it could not be made)")
    print(f"\nresults: {redact(path)}")
    return 0


def _no_api_named() -> bool:
    """Whether the run needs a temporary server: no PREFECT_API_URL in the settings."""
    from prefect.settings import get_current_settings  # Prefect only once the input passed

    return not get_current_settings().api.url


def _resume_hint(output_dir: str, run_id: str | None, before: str = "") -> str:
    """Say how to finish run `run_id` if it waits unfinished in `output_dir`, as on disk."""
    with contextlib.suppress(Exception):  # a store that fails here only loses the hint
        if run_id and run_id in run_folders(output_dir):
            return (
                f"{before}The shards written so far are kept; finish the run with "
                f"`iris-sweep --resume {run_id}`"
            )
    return ""


def _published(output_dir: str, run_id: str | None) -> str | None:
    """Return the folder of run `run_id` if it is published in `output_dir`, as on disk."""
    with contextlib.suppress(Exception):  # a store that fails here only loses the folder
        for part in list_result_files(output_dir) if run_id else ():
            if posixpath.dirname(part).endswith(f"Z-{run_id}"):
                return posixpath.dirname(part)
    return None


if __name__ == "__main__":
    raise SystemExit(main())

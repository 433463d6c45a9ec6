"""The checks before a run, once per run: parameters, resume, data, forecast; its name and tags."""

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from irismodel.data import Split, load_dataset, split_dataset
from irismodel.estimate import Estimate, check_fits, forecast
from irismodel.parameters import MAX_HIDDEN_DIM, MAX_HIDDEN_DIMS, MAX_SEED, MAX_SEEDS, SweepConfig
from irismodel.ranges import parse_ranges
from irismodel.store import check_resumable, resumed_config


@dataclass(frozen=True)
class Preflight:
    """A run that passed every check before its work: what it runs, on what, at what cost."""

    given: dict[str, Any]  # the parameters as given (a check handed over is matched on them)
    config: SweepConfig  # validated; a resume's are its run's own parameters
    splits: dict[int, Split]  # by split seed: the data, read once and split
    forecast: Estimate


# The pre-flight of the run about to start here, made by the command line before Prefect starts.
_HANDED: ContextVar[Preflight | None] = ContextVar("handed_preflight", default=None)


def preflight(
    parameters: Mapping[str, Any],
    *,
    starting: bool = False,
    temporary_server: bool | Callable[[], bool] = False,
) -> Preflight:
    """Check a run before any work: validate, resume, read and split the data, forecast.

    Raises `ValueError` naming the parameter; nothing is written. A resume takes its run's stored
    parameters but the `force` given. Inside `handed_over(checked)` it returns `checked`.
    """
    handed = _HANDED.get()
    if handed is not None and handed.given == dict(parameters):
        return handed
    config = SweepConfig(**parameters)
    if config.resume:
        config = resumed_config(config)
    splits = check_splits(config)
    if config.resume:
        check_resumable(config, next(iter(splits.values())).data_fingerprint)
    if callable(temporary_server):
        temporary_server = temporary_server()
    estimate = forecast(config, starting=starting, temporary_server=temporary_server)
    check_fits(config, estimate, config.force)
    return Preflight(dict(parameters), config, splits, estimate)


@contextlib.contextmanager
def handed_over(checked: Preflight) -> Iterator[None]:
    """Within the block, the pre-flight of `checked.given` is `checked` (see `preflight`)."""
    token = _HANDED.set(checked)
    try:
        yield
    finally:
        _HANDED.reset(token)


def check_splits(config: SweepConfig) -> dict[int, Split]:
    """Return `config`'s splits by split seed, or raise ValueError."""
    dataset = load_dataset(config.data_path)
    label, test, scale = config.positive_class, config.test_size, config.standardize
    return {seed: split_dataset(dataset, label, test, seed, scale) for seed in config.split_seeds}


def check_data(config: SweepConfig) -> Split:
    """Check the data and every split as `check_splits` does; return the first split."""
    return next(iter(check_splits(config).values()))


def _span(values: Sequence[int]) -> str:
    ordered = sorted(values)
    if len(ordered) > 1 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]}-{ordered[-1]}"
    return ",".join(str(v) for v in ordered[:4]) + ("..." if len(ordered) > 4 else "")


def run_label(parameters: Mapping[str, Any]) -> str:
    """Return a run's name from its parameters, e.g. `h8-14_sgd+manual_s10_e1000`; any input."""
    defaults = {name: field.default for name, field in SweepConfig.model_fields.items()}
    given = {name: parameters.get(name) or default for name, default in defaults.items()}
    try:
        dims = parse_ranges("hidden_dims", given["hidden_dims"], 1, MAX_HIDDEN_DIM, MAX_HIDDEN_DIMS)
        count = len(parse_ranges("seeds", given["seeds"], 0, MAX_SEED, MAX_SEEDS))
        rules = "+".join(map(str, given["optimizers"]))
        return f"h{_span(list(dims))}_{rules}_s{count}_e{int(given['epochs'])}"
    except (TypeError, ValueError):
        return "iris-sweep"


def run_tags(config: SweepConfig) -> list[str]:
    """Return the tags of a run: what it sweeps, so the Runs page can be filtered by it."""
    return [
        "iris-sweep",
        f"h{_span(config.hidden_dims)}",
        *config.optimizers,
        f"seeds:{len(config.seeds)}",
        f"splits:{len(config.split_seeds)}",
        f"epochs:{config.epochs}",
        config.resolved_device,
    ]

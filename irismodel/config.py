"""The sweep's parameters, their defaults, and their validation, in one place."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from irismodel.data import Split, check_data_path, load_dataset, split_dataset
from irismodel.devices import resolve_device
from irismodel.optimizers import OPTIMIZERS
from irismodel.ranges import IntRanges, parse_ranges
from irismodel.storage import check_location, redact

MAX_HIDDEN_DIM = 4096
MAX_EPOCHS = 1_000_000
MAX_SEED = 2**63 - 1
# Bounds that keep a run's plan small and refuse a typo such as 0..1000000000 in seconds.
MAX_SEEDS = 10_000_000
MAX_SHARD_SIZE = 100_000
MAX_SHARDS = 100_000  # shard tasks in one run: each is a Prefect task run
# A shard's loss curves (float32) stay within this many values by default: 8 MB, so a shard
# task's memory does not depend on the sweep's size (2,000 seeds at 1,000 epochs).
SHARD_VALUES = 2_000_000
DEFAULT_MAX_SHARD_SIZE = 10_000
_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Larger rates overflow float32 update steps (Adam's first step is 10 x lr) and crash torch
# instead of diverging; 1e30 already turns every model's loss into NaN within an epoch or two.
MAX_LEARNING_RATE = 1e30


@dataclass(frozen=True)
class SweepConfig:
    """One sweep: every (hidden_dim, optimizer) trained for every seed, then evaluated."""

    hidden_dims: tuple[int, ...] = tuple(range(8, 15))  # the notebook's 8..14
    optimizers: tuple[str, ...] = ("sgd", "manual")
    seeds: IntRanges | Sequence[int] | str = IntRanges.of(range(10))
    learning_rate: float = 0.1  # the notebook's
    epochs: int = 1000  # the notebook's; full-batch epochs
    test_size: float = 0.25  # share of rows held out, stratified; 0 = the notebook's all-rows
    split_seed: int = 0  # seeds the train/test split, apart from the model seeds
    standardize: bool = False  # fit mean/std on the training rows; the notebook did not
    positive_class: str | int = "versicolor"  # class name or index; the notebook's target == 1
    data_path: str | None = None  # None = scikit-learn's bundled Iris
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    output_dir: str = "results"  # local folder or pyarrow.fs URI
    shard_size: int | None = None  # seeds per shard; None = default_shard_size(epochs)
    resume: str | None = None  # the run id of an unfinished run to finish
    force: bool = False  # start even if the estimate says the disk or memory is too small
    report: bool = True  # make the report (artifacts, plots) once the results are published
    resolved_device: str = field(default="", compare=False)

    def parameters(self) -> dict[str, Any]:
        """Return the parameters as JSON-ready plain data: seeds as text (`0..29`), lists."""
        params = asdict(self)
        params.pop("resolved_device")
        params["seeds"] = (
            IntRanges.of(self.seeds).text()
            if not isinstance(self.seeds, IntRanges)
            else self.seeds.text()
        )
        params["output_dir"] = redact(self.output_dir)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}

    @property
    def seed_set(self) -> IntRanges:
        """The seeds, as validated (`validate_config` stores an `IntRanges`)."""
        if isinstance(self.seeds, IntRanges):
            return self.seeds
        return IntRanges.of(self.seeds)  # type: ignore[arg-type]

    @property
    def seeds_per_shard(self) -> int:
        """Seeds in each shard: `shard_size`, or the default for this many epochs."""
        return self.shard_size if self.shard_size is not None else default_shard_size(self.epochs)


def default_shard_size(epochs: int) -> int:
    """Return the default seeds per shard: curves within `SHARD_VALUES` floats, at most 10,000."""
    return max(1, min(DEFAULT_MAX_SHARD_SIZE, SHARD_VALUES // max(epochs, 1)))


def _int_list(name: str, values: Any, low: int, high: int) -> tuple[int, ...]:
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise ValueError(f"{name}: expected a list of integers, got {values!r}")
    if len(values) == 0:
        raise ValueError(f"{name}: must not be empty; give at least one integer in {low}..{high}")
    out = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ValueError(f"{name}: {value!r} is not an integer; allowed are {low}..{high}")
        if not low <= value <= high:
            raise ValueError(f"{name}: {value} is out of range; allowed are {low}..{high}")
        out.append(value)
    seen: set[int] = set()
    duplicates = sorted({v for v in out if v in seen or seen.add(v)})
    if duplicates:
        raise ValueError(f"{name}: duplicate value(s) {duplicates}; each may appear once")
    return tuple(out)


def _positive_finite(name: str, value: Any, high: float) -> float:
    allowed = f"it must be a positive finite number, at most {high:g}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: expected a number, got {value!r}; {allowed}")
    if not math.isfinite(value) or not 0 < value <= high:
        raise ValueError(f"{name}: {value} is not allowed; {allowed}")
    return float(value)


def validate_config(**parameters: Any) -> SweepConfig:
    """Return a `SweepConfig` from sweep parameters, or raise `ValueError` naming the bad one.

    Checks everything that needs no reading of the data: names, ranges, the device (CUDA must
    exist if asked for), that a `data_path` is an existing CSV or Parquet file, and that the
    output location can be written. Nothing is written. The checks that read the data (its
    columns and values, the positive class, whether the split leaves rows of both classes) are
    `check_data`'s, run by the flow when it splits the data.
    """
    known = [name for name in SweepConfig.__dataclass_fields__ if name != "resolved_device"]
    unknown = set(parameters) - set(known)
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(sorted(unknown))}; valid are {', '.join(known)}"
        )
    config = SweepConfig(**parameters)
    hidden_dims = _int_list("hidden_dims", config.hidden_dims, 1, MAX_HIDDEN_DIM)
    seeds = parse_ranges("seeds", config.seeds, 0, MAX_SEED, MAX_SEEDS)

    optimizers = config.optimizers
    if isinstance(optimizers, str) or not isinstance(optimizers, Sequence):
        raise ValueError(f"optimizers: expected a list of names from {', '.join(OPTIMIZERS)}")
    if len(optimizers) == 0:
        raise ValueError(f"optimizers: must not be empty; valid names are {', '.join(OPTIMIZERS)}")
    for name in optimizers:
        if name not in OPTIMIZERS:
            raise ValueError(
                f"optimizers: unknown optimizer {name!r}; valid names are {', '.join(OPTIMIZERS)}"
            )
    if len(set(optimizers)) != len(optimizers):
        raise ValueError(f"optimizers: duplicate names in {list(optimizers)}; each may appear once")

    learning_rate = _positive_finite("learning_rate", config.learning_rate, MAX_LEARNING_RATE)
    epochs = config.epochs
    if isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs <= MAX_EPOCHS:
        raise ValueError(
            f"epochs: {epochs!r} is not allowed; it must be an integer in 1..{MAX_EPOCHS}"
        )
    test_size = config.test_size
    if (
        isinstance(test_size, bool)
        or not isinstance(test_size, int | float)
        or not math.isfinite(test_size)
        or not 0 <= test_size < 1
    ):
        raise ValueError(
            f"test_size: {test_size!r} is not allowed; it must be in [0, 1) "
            "(0 trains and evaluates on every row)"
        )
    split_seed = config.split_seed
    if (
        isinstance(split_seed, bool)
        or not isinstance(split_seed, int)
        or not 0 <= split_seed < 2**32
    ):
        raise ValueError(
            f"split_seed: {split_seed!r} is not allowed; it must be an integer in 0..2**32-1"
        )
    for name in ("force", "report"):
        if not isinstance(getattr(config, name), bool):
            raise ValueError(f"{name}: expected true or false, got {getattr(config, name)!r}")
    if not isinstance(config.standardize, bool):
        raise ValueError(f"standardize: expected true or false, got {config.standardize!r}")
    positive_class = config.positive_class
    if isinstance(positive_class, bool) or not isinstance(positive_class, str | int):
        raise ValueError(f"positive_class: expected a class name or index, got {positive_class!r}")
    if config.data_path is not None:
        check_data_path(config.data_path)
    shard_size = config.shard_size
    if shard_size is not None and (
        isinstance(shard_size, bool)
        or not isinstance(shard_size, int)
        or not 1 <= shard_size <= MAX_SHARD_SIZE
    ):
        raise ValueError(
            f"shard_size: {shard_size!r} is not allowed; it must be an integer in "
            f"1..{MAX_SHARD_SIZE}, or null for the default ({SHARD_VALUES:,} loss values a shard)"
        )
    per_shard = shard_size if shard_size is not None else default_shard_size(epochs)
    shards = len(hidden_dims) * len(optimizers) * -(-len(seeds) // per_shard)
    if shards > MAX_SHARDS and shard_size is not None:
        raise ValueError(
            f"shard_size: {per_shard} seeds per shard makes {shards:,} shard tasks; at most "
            f"{MAX_SHARDS:,} are allowed in one run, so raise shard_size (or leave it out)"
        )
    if shards > MAX_SHARDS:
        raise ValueError(
            f"seeds: {len(seeds):,} seeds x {epochs:,} epochs make {shards:,} shard tasks of "
            f"{per_shard} seeds (a shard's curves stay within {SHARD_VALUES:,} values); at most "
            f"{MAX_SHARDS:,} are allowed in one run: sweep fewer, or give a larger shard_size"
        )
    resume = config.resume
    if resume is not None and (not isinstance(resume, str) or not _RUN_ID.fullmatch(resume)):
        raise ValueError(
            f"resume: {resume!r} is not a run id; give the id of the unfinished run to finish "
            "(letters, digits, '-' and '_', as printed when the run started)"
        )
    resolved_device = resolve_device(config.device)
    output_dir = check_location(config.output_dir, "output_dir")
    return SweepConfig(
        hidden_dims=hidden_dims,
        optimizers=tuple(optimizers),
        seeds=seeds,
        learning_rate=learning_rate,
        epochs=epochs,
        test_size=float(test_size),
        split_seed=split_seed,
        standardize=config.standardize,
        positive_class=positive_class,
        data_path=config.data_path,
        device=config.device,
        output_dir=output_dir,
        shard_size=shard_size,
        resume=resume,
        force=config.force,
        report=config.report,
        resolved_device=resolved_device,
    )


def check_data(config: SweepConfig) -> Split:
    """Load and split the data as a sweep of `config` would; raise `ValueError` naming the problem.

    The data-dependent half of validation: `validate_config` then `check_data` refuse every bad
    input before any training. Nothing is written; the split is returned for reuse.
    """
    dataset = load_dataset(config.data_path)
    return split_dataset(
        dataset, config.positive_class, config.test_size, config.split_seed, config.standardize
    )


def _span(values: Sequence[int]) -> str:
    ordered = sorted(values)
    if len(ordered) > 1 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]}-{ordered[-1]}"
    return ",".join(str(v) for v in ordered[:4]) + ("..." if len(ordered) > 4 else "")


def run_label(parameters: Mapping[str, Any]) -> str:
    """Return a run's name from its parameters, e.g. `h8-14_sgd+manual_s10_e1000`.

    Tolerant of any input (it names runs whose parameters may be refused a moment later).
    """
    defaults = SweepConfig()
    try:
        dims = list(parameters.get("hidden_dims") or defaults.hidden_dims)
        rules = list(parameters.get("optimizers") or defaults.optimizers)
        seeds = parameters.get("seeds") or defaults.seed_set
        count = len(parse_ranges("seeds", seeds, 0, MAX_SEED, MAX_SEEDS))
        epochs = int(parameters.get("epochs") or defaults.epochs)
        return f"h{_span(dims)}_{'+'.join(map(str, rules))}_s{count}_e{epochs}"
    except (TypeError, ValueError):
        return "iris-sweep"


def run_tags(config: SweepConfig) -> list[str]:
    """Return the tags of a run: what it sweeps, so the Runs page can be filtered by it."""
    return [
        "iris-sweep",
        f"h{_span(config.hidden_dims)}",
        *config.optimizers,
        f"seeds:{len(config.seed_set)}",
        f"epochs:{config.epochs}",
        config.resolved_device,
    ]

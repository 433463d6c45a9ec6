"""What a sweep will cost before it starts (time, memory, bytes written), and whether it fits."""

import contextlib
import os
import shutil
from collections.abc import Collection
from dataclasses import dataclass

from irismodel.parameters import SweepConfig
from irismodel.reference import checked_pairs
from irismodel.store import finished_before, locations, plan_shards

# Seconds per model-epoch per hidden unit on one core with the fused kernel (bench/engine.py);
# the eager loop, used when nothing is compiled or on another device, is taken as 8x slower.
FUSED_SECONDS = 6.5e-8
EAGER_FACTOR = 8.0
# What a run does besides training, measured end to end by bench/forecast.py (2 cores):
MODEL_SECONDS = 3e-5  # a model's initial weights, evaluation, rows, Parquet (bench/overhead.py)
SHARD_SECONDS = 0.05  # a shard task's run, part file and the manifest's check
START_SECONDS = 4.0  # a command's start: Python, torch, pyarrow and Prefect imported
FLOW_SECONDS = 2.0  # validation, data, the run opened, tasks recorded, publication
REPORT_SECONDS = 2.0  # plots and bootstrap intervals ...
REPORT_MODEL_SECONDS = 2.5e-5  # ... then a pass over every row
SERVER_SECONDS = 8.0  # Prefect's temporary server, without PREFECT_API_URL (4-12 s when busy)
COMPILE_SECONDS = 30.0  # the one-time build of the compiled loops (~26-30 s here)
# Parquet bytes (measured): a curve's float32 values byte-split and compressed, the weights (6
# a hidden unit, 1 more a model) barely compress, the other columns of a row take ~50 bytes, a
# part file's footer and schema ~16 KB.
BYTES_PER_VALUE = 2.5
BYTES_PER_WEIGHT = 3.6
BYTES_PER_ROW = 60
BYTES_PER_PART = 16 << 10
BASE_BYTES = 600 << 20  # a worker besides its shards: torch, pyarrow, sklearn, Prefect
COPIES_PER_SHARD = 4  # curves in float32: the engine's, the table's, Parquet's buffers, spare
# Per model and hidden unit while a shard trains: each training row's pre-activation, ReLU and
# gradient, and the weights' copies (parameters, gradients, optimizer state).
ACTIVATION_COPIES = 3
WEIGHT_COPIES = 5
WEIGHTS_PER_UNIT = 6  # fc1: 4 weights and a bias; fc2: one weight
IRIS_ROWS = 150
# The reference check's loop (the notebook's, one model at a time): ~2,000 model-epochs/s a core.
REFERENCE_SECONDS = 5e-4


@dataclass(frozen=True)
class Estimate:
    """A sweep's size and a rough forecast of what it costs on this machine."""

    models: int
    model_epochs: int
    seconds: float  # wall seconds on `workers` cores, everything the run does (see `parts`)
    workers: int
    peak_bytes: int  # memory of the process that runs the tasks, all workers together
    disk_bytes: int
    parts: tuple[tuple[str, float], ...] = ()  # (what, seconds) that add up to `seconds`

    def text(self) -> str:
        """Return a one-line summary for logs."""
        shown = [f"{what} {_duration(seconds)}" for what, seconds in self.parts if seconds >= 0.5]
        breakdown = f" ({', '.join(shown)})" if shown else ""
        return (
            f"{_count(self.models, 'model')}, {_count(self.model_epochs, 'model-epoch')}: about "
            f"{_duration(self.seconds)} on {self.workers} cores{breakdown}, "
            f"{self.peak_bytes / 2**30:.1f} GiB of memory, "
            f"{self.disk_bytes / 2**30:.2f} GiB written"
        )


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate(
    config: SweepConfig,
    workers: int | None = None,
    compiled: bool = True,
    *,
    compile_first: bool = False,
    starting: bool = False,
    temporary_server: bool = False,
    finished: Collection[str] = (),
    rows: int | None = None,
) -> Estimate:
    """Return the forecast of `config` run on `workers` cores (default: this machine's).

    `compiled`/`compile_first`: the compiled loops are used/built first; `starting`: before the
    imports; `temporary_server`: Prefect's; `finished`: shards written; `rows`: default 150.
    """
    workers = workers or os.cpu_count() or 1
    factor = 1.0 if compiled and config.resolved_device in ("", "cpu") else EAGER_FACTOR
    shards = [shard for shard in plan_shards(config) if shard.name not in finished]
    seeds = sum(len(shard) for shard in shards)  # models left, over every configuration
    unit_epochs = sum(len(shard) * shard.hidden_dim for shard in shards) * config.epochs
    configurations = len(config.optimizers) * len(config.hidden_dims)
    all_models = len(config.seeds) * len(config.split_seeds) * configurations
    # the check retrains `reference_seeds` (split, seed) pairs of each configuration, spread
    # over the run: a resume retrains the share of them in its missing shards
    pairs = len(checked_pairs(config.seeds, config.reference_seeds, config.split_seeds))
    checked = pairs * configurations * len(shards) / max(1, len(plan_shards(config)))
    reference = checked * min(config.reference_epochs, config.epochs) * REFERENCE_SECONDS
    parts = {
        "training": unit_epochs * FUSED_SECONDS * factor / workers,
        "reference check": reference / workers,
        "evaluating and writing": seeds * MODEL_SECONDS + len(shards) * SHARD_SECONDS / workers,
        "start": START_SECONDS if starting else 0.0,
        "flow": FLOW_SECONDS,
        "report": REPORT_SECONDS + all_models * REPORT_MODEL_SECONDS if config.report else 0.0,
        "first-use compile": COMPILE_SECONDS if compiled and compile_first else 0.0,
        "temporary server": SERVER_SECONDS if temporary_server else 0.0,
    }
    training_rows = round((rows or IRIS_ROWS) * (1 - config.test_size)) or 1
    per_unit = training_rows * ACTIVATION_COPIES + WEIGHTS_PER_UNIT * WEIGHT_COPIES
    largest = max(config.hidden_dims)
    shard_seeds = min(config.seeds_per_shard, len(config.seeds))
    shard = shard_seeds * (config.epochs * COPIES_PER_SHARD + largest * per_unit) * 4
    disk = seeds * (config.epochs * BYTES_PER_VALUE + BYTES_PER_WEIGHT + BYTES_PER_ROW)
    disk += unit_epochs / max(config.epochs, 1) * WEIGHTS_PER_UNIT * BYTES_PER_WEIGHT
    disk += len(shards) * BYTES_PER_PART
    return Estimate(
        models=seeds,
        model_epochs=seeds * config.epochs,
        seconds=sum(parts.values()),
        workers=workers,
        peak_bytes=BASE_BYTES + workers * shard,
        disk_bytes=int(disk),
        parts=tuple(parts.items()),
    )


def forecast(
    config: SweepConfig, starting: bool = False, temporary_server: bool = False
) -> Estimate:
    """Return the forecast of `config` run here, now (ValueError: bad `IRISMODEL_NATIVE_BUILD`)."""
    from irismodel import native  # imports torch: only when a forecast is asked for

    compiled = native.expected()
    return estimate(
        config,
        compiled=compiled,
        compile_first=compiled and not native.is_built(),
        starting=starting,
        temporary_server=temporary_server,
        finished=finished_before(config),
    )


def _available_memory() -> int | None:
    with contextlib.suppress(OSError), open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def _free_disk(path: str) -> int | None:
    if locations.is_uri(path):
        return None  # object stores have no free space to ask about
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    with contextlib.suppress(OSError):
        return shutil.disk_usage(path).free
    return None


def check_fits(config: SweepConfig, forecast: Estimate, force: bool = False) -> None:
    """Raise `ValueError` if the sweep cannot fit the free disk or memory here, unless `force`."""
    if force:
        return
    free = _free_disk(config.output_dir)
    if free is not None and forecast.disk_bytes > free:
        raise ValueError(
            f"output_dir: this sweep writes about {forecast.disk_bytes / 2**30:.1f} GiB "
            f"({forecast.models:,} models x {config.epochs} epochs) and "
            f"{locations.redact(config.output_dir)!r} has {free / 2**30:.1f} GiB free; free some "
            "space, sweep less, or pass force=true (--force) to start anyway"
        )
    memory = _available_memory()
    if memory is not None and forecast.peak_bytes > memory:
        raise ValueError(
            f"shard_size: {config.seeds_per_shard} seeds x {config.epochs} epochs a shard need "
            f"about {forecast.peak_bytes / 2**30:.1f} GiB on {forecast.workers} workers, and "
            f"{memory / 2**30:.1f} GiB are available; lower shard_size or pass force=true (--force)"
        )

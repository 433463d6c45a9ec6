"""What a sweep will cost before it starts (time, memory, bytes written), and whether it fits."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from irismodel import storage
from irismodel.config import SweepConfig

# Seconds per model-epoch per hidden unit on one core, as measured with the fused kernel on the
# benchmark machine (bench/engine.py: 1.9 M model-epochs/s at hidden_dim 8, 1.5 M at 11); the
# eager loop, used when nothing is compiled or on another device, is taken as 8x slower.
FUSED_SECONDS = 6.5e-8
EAGER_FACTOR = 8.0
# Parquet bytes per loss value (float32 curves barely compress) and per row besides its curve.
BYTES_PER_VALUE = 3.6
BYTES_PER_ROW = 300
# A worker's memory besides its shards: torch, pyarrow, scikit-learn, Prefect imported.
BASE_BYTES = 600 << 20
COPIES_PER_SHARD = 4  # curves in float32: the engine's, the table's, Parquet's buffers, spare
# The reference check's loop (the notebook's, one model at a time): ~2,000 model-epochs/s a core.
REFERENCE_SECONDS = 5e-4


@dataclass(frozen=True)
class Estimate:
    """A sweep's size and a rough forecast of what it costs on this machine."""

    models: int
    model_epochs: int
    seconds: float  # wall seconds on `workers` cores: training and the reference check
    workers: int
    peak_bytes: int  # memory of the process that runs the tasks, all workers together
    disk_bytes: int

    def text(self) -> str:
        """Return a one-line summary for logs."""
        return (
            f"{_count(self.models, 'model')}, {_count(self.model_epochs, 'model-epoch')}: about "
            f"{_duration(self.seconds)} on {self.workers} cores, {self.peak_bytes / 2**30:.1f} GiB "
            f"of memory, {self.disk_bytes / 2**30:.2f} GiB written"
        )


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate(config: SweepConfig, workers: int | None = None, compiled: bool = True) -> Estimate:
    """Return the forecast of `config` run on `workers` cores (default: this machine's)."""
    workers = workers or os.cpu_count() or 1
    per_split = len(config.seed_set)
    seeds = per_split * len(config.split_set)  # every seed is trained on every split
    per_rule = seeds * len(config.optimizers) * config.epochs
    unit_epochs = sum(per_rule * hidden_dim for hidden_dim in config.hidden_dims)
    factor = 1.0 if compiled and config.resolved_device in ("", "cpu") else EAGER_FACTOR
    models = seeds * len(config.optimizers) * len(config.hidden_dims)
    shard = min(config.seeds_per_shard, per_split) * config.epochs * 4 * COPIES_PER_SHARD
    checked = min(config.reference_seeds, seeds) * len(config.optimizers) * len(config.hidden_dims)
    reference = checked * min(config.reference_epochs, config.epochs) * REFERENCE_SECONDS
    return Estimate(
        models=models,
        model_epochs=models * config.epochs,
        seconds=(unit_epochs * FUSED_SECONDS * factor + reference) / workers,
        workers=workers,
        peak_bytes=BASE_BYTES + workers * shard,
        disk_bytes=int(models * (config.epochs * BYTES_PER_VALUE + BYTES_PER_ROW)),
    )


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _free_disk(location: str) -> int | None:
    if storage.is_uri(location):
        return None  # object stores have no free space to ask about
    path = location
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def check_fits(config: SweepConfig, forecast: Estimate, force: bool = False) -> None:
    """Raise `ValueError` if the sweep cannot fit this machine's free disk or memory.

    `force` skips the check (for a machine that will have the room by the time it is needed).
    """
    if force:
        return
    free = _free_disk(config.output_dir)
    if free is not None and forecast.disk_bytes > free:
        raise ValueError(
            f"output_dir: this sweep writes about {forecast.disk_bytes / 2**30:.1f} GiB "
            f"({forecast.models:,} models x {config.epochs} epochs) and "
            f"{storage.redact(config.output_dir)!r} has {free / 2**30:.1f} GiB free; free some "
            "space, sweep less, or pass force=true (--force) to start anyway"
        )
    memory = _available_memory()
    if memory is not None and forecast.peak_bytes > memory:
        raise ValueError(
            f"shard_size: {config.seeds_per_shard} seeds x {config.epochs} epochs a shard need "
            f"about {forecast.peak_bytes / 2**30:.1f} GiB on {forecast.workers} workers, and "
            f"{memory / 2**30:.1f} GiB are available; lower shard_size or pass force=true (--force)"
        )

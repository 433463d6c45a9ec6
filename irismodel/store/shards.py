"""A run's shards: the plan, and whether the part files in its staging folder hold exactly them."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from . import layout
from .locations import child, first_line, redact
from .lock import RunError
from .schema import schema_problem

if TYPE_CHECKING:
    from irismodel.parameters import SweepConfig

    from .runs import RunFolder


@dataclass(frozen=True)
class Shard:
    """One task's share of a sweep: seeds `start..stop-1` of a configuration on one data split."""

    hidden_dim: int
    optimizer: str
    index: int  # within its configuration and split: 0, 1, ...
    start: int
    stop: int
    split_seed: int = 0
    named_split: bool = False  # the run has several splits: the name says which

    @property
    def name(self) -> str:
        """The shard's name, e.g. `h8-sgd-0003`, or `s2-h8-sgd-0003` on split seed 2 of several."""
        split = f"s{self.split_seed}-" if self.named_split else ""
        configuration = layout.configuration_name(self.hidden_dim, self.optimizer)
        return f"{split}{configuration}-{self.index:04d}"

    @property
    def file_name(self) -> str:
        """The part file's name."""
        return self.name + layout.FILE_SUFFIX

    def __len__(self) -> int:
        return self.stop - self.start

    def seeds(self, config: SweepConfig) -> list[int]:
        """Return this shard's seeds."""
        return config.seeds.take(self.start, self.stop)


def plan_shards(config: SweepConfig) -> list[Shard]:
    """Return every shard of a sweep: per split and configuration, seeds cut into shards."""
    size, total = config.seeds_per_shard, len(config.seeds)
    named = len(config.split_seeds) > 1
    return [
        Shard(hidden_dim, optimizer, index, start, min(start + size, total), split, named)
        for split in config.split_seeds
        for hidden_dim in config.hidden_dims
        for optimizer in config.optimizers
        for index, start in enumerate(range(0, total, size))
    ]


def most_work_first(shards: list[Shard]) -> list[Shard]:
    """Return `shards` in the order to start them: the most work (seeds x hidden units) first.

    Side by side on a pool of workers, the short shards then come last and the workers finish
    nearly together, rather than one training a large shard alone at the end. Ties keep the plan's
    order; rows do not depend on the order.
    """
    return sorted(shards, key=lambda shard: len(shard) * shard.hidden_dim, reverse=True)


def _all_equal(column: pa.ChunkedArray | pa.Array, value: Any) -> bool:
    return len(column) == 0 or bool(pc.all(pc.equal(column, value)).as_py())


def part_problem(
    place: RunFolder,
    entry: pafs.FileInfo,
    shard: Shard,
    run_id: str,
    fingerprint: str | None,
    config: SweepConfig | None = None,
) -> str | None:
    """Say what makes a part file not shard `shard` of run `run_id` (rows too with `config`)."""
    if isinstance(place.fs, pafs.LocalFileSystem) and os.path.islink(entry.path):
        return "it is a symbolic link"  # the run would depend on its target
    try:
        parquet = pq.ParquetFile(entry.path, filesystem=place.fs)
        meta = parquet.schema_arrow.metadata or {}
        if problem := schema_problem(parquet.schema_arrow):
            return f"it {problem}"
        for key, expected, what in ((layout.META_RUN_ID, run_id, "belongs to run"),
                                    (layout.META_SHARD, shard.name, "holds shard")):  # fmt: skip
            found = meta.get(key, b"?").decode(errors="replace")
            if found != expected:
                return f"it {what} {found!r}"
        if parquet.metadata.num_rows != len(shard):
            return f"it holds {parquet.metadata.num_rows} rows, not the shard's {len(shard)}"
        if fingerprint is not None and not _all_equal(
            parquet.read(["data_fingerprint"])[0], fingerprint
        ):
            return "its rows are of other data than the run's"
        if config is None:
            return None
        wanted = {"hidden_dim": shard.hidden_dim, "optimizer": shard.optimizer}
        wanted |= {"split_seed": shard.split_seed, "epochs": config.epochs}
        table = parquet.read([*wanted, "seed", "loss_curve"])
        columns = [(table[name], value) for name, value in wanted.items()]
        columns.append((pc.list_value_length(table["loss_curve"]), config.epochs))
        seeds = table["seed"].to_pylist()
        same = seeds == shard.seeds(config) and all(_all_equal(c, v) for c, v in columns)
    except (OSError, pa.ArrowException, ValueError, KeyError) as error:
        return f"it cannot be read ({first_line(error)})"
    return None if same else "its rows are not the shard's"


def finished_shards(
    place: RunFolder, config: SweepConfig, run_id: str, fingerprint: str | None = None
) -> frozenset[str]:
    """Return the shards whose part files in staging hold exactly what they must."""
    plan = {shard.file_name: shard for shard in plan_shards(config)}
    return frozenset(
        plan[e.base_name].name
        for e in place.entries()
        if e.base_name in plan and e.type == pafs.FileType.File
        and part_problem(place, e, plan[e.base_name], run_id, fingerprint, config) is None
    )  # fmt: skip


def check_staged(
    place: RunFolder, config: SweepConfig, run_id: str, fingerprint: str | None
) -> None:
    """Check a staging folder holds exactly the run's parts; remove temporaries left in it."""
    plan = {shard.file_name: shard for shard in plan_shards(config)}
    hint = f"finish the run with `iris-sweep --resume {run_id}`"
    seen = set()
    for entry in place.entries():
        name, shown = entry.base_name, redact(child(place.staging, entry.base_name))
        if name in (layout.MANIFEST, layout.LOCK):
            continue
        if layout.is_temporary(name):
            with contextlib.suppress(OSError):  # a writer killed mid-file: never published
                place.fs.delete_file(entry.path)
            continue
        shard = plan.get(name)
        if shard is None or entry.type != pafs.FileType.File:
            problem: str | None = f"is no part of run {run_id}'s plan"
        elif problem := part_problem(place, entry, shard, run_id, fingerprint):
            problem = f"is not shard {shard.name} of run {run_id}: {problem}"
        if problem:
            raise RunError(f"publish: {shown!r} {problem}; remove it, then {hint}")
        seen.add(name)
    if missing := sorted(set(plan) - seen):
        raise RunError(
            f"publish: run {run_id} lacks {len(missing)} of its {len(plan)} parts "
            f"({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}); {hint}"
        )

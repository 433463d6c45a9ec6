"""A run's life on disk: its shards, its staging folder and manifest, resuming, publication."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from irismodel import storage
from irismodel.config import SweepConfig, validate_config
from irismodel.results import (
    FILE_PREFIX,
    FILE_SUFFIX,
    MANIFEST,
    META_RUN_ID,
    META_SCHEMA_VERSION,
    META_SHARD,
    SCHEMA,
    SCHEMA_VERSION,
    STAGING,
    package_versions,
    run_folder_name,
)

MANIFEST_FORMAT = "iris-sweep-run/2"
STATUS_RUNNING = "running"
STATUS_FAILED = "failed"
STATUS_COMPLETE = "complete"
# Parameters that do not change what a run computes: a resume may differ in them.
_NOT_COMPARED = ("resume", "output_dir", "force", "report")


class RunError(ValueError):
    """A run cannot be resumed or published as asked."""


@dataclass(frozen=True)
class Shard:
    """One task's share of a sweep: seeds at sorted positions `start..stop-1` of a configuration."""

    hidden_dim: int
    optimizer: str
    index: int  # within its configuration: 0, 1, ...
    start: int
    stop: int

    @property
    def configuration(self) -> str:
        """The configuration's name, e.g. `h8-sgd`."""
        return f"h{self.hidden_dim}-{self.optimizer}"

    @property
    def name(self) -> str:
        """The shard's name, e.g. `h8-sgd-0003`: its task's and its part file's."""
        return f"{self.configuration}-{self.index:04d}"

    @property
    def file_name(self) -> str:
        """The part file's name."""
        return self.name + FILE_SUFFIX

    def __len__(self) -> int:
        return self.stop - self.start

    def seeds(self, config: SweepConfig) -> list[int]:
        """Return this shard's seeds."""
        return config.seed_set.take(self.start, self.stop)


def plan_shards(config: SweepConfig) -> list[Shard]:
    """Return every shard of a sweep: each configuration's seeds cut into `seeds_per_shard`."""
    size, total = config.seeds_per_shard, len(config.seed_set)
    return [
        Shard(hidden_dim, optimizer, index, start, min(start + size, total))
        for hidden_dim in config.hidden_dims
        for optimizer in config.optimizers
        for index, start in enumerate(range(0, total, size))
    ]


@dataclass(frozen=True)
class RunPlace:
    """Where a run's files live: its output location and its folder name there."""

    root: str  # the output location
    folder: str  # iris-sweep-<UTC start>Z-<run id>

    @property
    def staging(self) -> str:
        """The hidden folder the run's shards are written to until it is published."""
        return storage.child(self.root, STAGING, self.folder)

    @property
    def published(self) -> str:
        """The folder of the published run."""
        return storage.child(self.root, self.folder)

    def staging_names(self, *names: str) -> tuple[str, ...]:
        """Return the path of `names` inside the staging folder, relative to `root`."""
        return (STAGING, self.folder, *names)


@dataclass(frozen=True)
class OpenedRun:
    """A run ready to train: where it lives, when it started, what is already done."""

    run_id: str
    started_at: datetime
    place: RunPlace
    finished: frozenset[str]  # names of shards whose part files were checked and kept
    published: bool  # the run was already published: nothing is left to do
    resumed: bool


def _safe_id(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", run_id)[:64] or "run"


def _find(root: str, run_id: str, staged: bool) -> str | None:
    """Return the folder name of run `run_id` (published, or in staging), if there is one."""
    folder = storage.child(root, STAGING) if staged else root
    suffix = f"Z-{_safe_id(run_id)}"
    for entry in storage.list_folder(folder):
        name = entry.base_name
        if (
            entry.type == pafs.FileType.Directory
            and name.startswith(FILE_PREFIX)
            and name.endswith(suffix)
        ):
            return name
    return None


def unfinished_runs(root: str) -> list[str]:
    """Return the ids of the runs whose shards wait in `root`'s staging folder."""
    ids = []
    for entry in storage.list_folder(storage.child(root, STAGING)):
        match = re.fullmatch(rf"{FILE_PREFIX}\d{{8}}T\d{{6}}Z-(.+)", entry.base_name)
        if match and entry.type == pafs.FileType.Directory:
            ids.append(match.group(1))
    return sorted(ids)


def _manifest(place: RunPlace, staged: bool) -> dict[str, Any]:
    folder = place.staging if staged else place.published
    try:
        record = json.loads(storage.read_bytes(storage.child(folder, MANIFEST)))
    except (OSError, ValueError) as error:
        raise RunError(
            f"resume: the run folder {storage.redact(folder)!r} has no readable manifest ({error})"
        ) from error
    if not isinstance(record, dict) or record.get("format") != MANIFEST_FORMAT:
        raise RunError(f"resume: {storage.redact(folder)!r} is not an iris-sweep run folder")
    return record


def write_manifest(place: RunPlace, record: Mapping[str, Any]) -> None:
    """Write (or replace) the run's manifest in its staging folder."""
    blob = json.dumps(dict(record), indent=1, sort_keys=True).encode()
    storage.write_file(
        place.root, place.staging_names(MANIFEST), lambda s: s.write(blob), replace=True
    )


def _compared(parameters: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in parameters.items() if k not in _NOT_COMPARED}


def resumed_config(config: SweepConfig) -> SweepConfig:
    """Return the config of the unfinished run `config.resume`, from its manifest.

    A resume trains with the run's own parameters; any other parameter given with it must
    either be left at its default or equal the run's.
    """
    assert config.resume is not None
    folder = _find(config.output_dir, config.resume, staged=True)
    if folder is None:
        done = _find(config.output_dir, config.resume, staged=False)
        if done is not None:
            raise RunError(
                f"resume: run {config.resume} is already complete: "
                f"{storage.redact(storage.child(config.output_dir, done))}"
            )
        waiting = unfinished_runs(config.output_dir)
        listed = ", ".join(waiting) if waiting else "none"
        raise RunError(
            f"resume: no unfinished run {config.resume!r} in "
            f"{storage.redact(config.output_dir)!r}; unfinished runs there: {listed}"
        )
    record = _manifest(RunPlace(config.output_dir, folder), staged=True)
    stored = dict(record["parameters"])
    defaults = SweepConfig().parameters()
    given = config.parameters()
    clashes = [
        name
        for name, value in _compared(given).items()
        if value != stored.get(name) and value != defaults.get(name)
    ]
    if clashes:
        raise RunError(
            f"resume: run {config.resume} was started with other values of "
            f"{', '.join(clashes)}; a resume uses the run's own parameters, so leave "
            "them out or give the same"
        )
    stored.pop("resume", None)
    stored["output_dir"] = config.output_dir
    stored["force"] = config.force  # asked of this attempt, not of the run
    return validate_config(**stored, resume=config.resume)


def finished_before(config: SweepConfig) -> frozenset[str]:
    """Return the shards the unfinished run `config.resume` already wrote and checked, if any."""
    if not config.resume:
        return frozenset()
    folder = _find(config.output_dir, config.resume, staged=True)
    if folder is None:
        return frozenset()
    return finished_shards(RunPlace(config.output_dir, folder), config, config.resume)


def open_run(config: SweepConfig, run_id: str, now: datetime | None = None) -> OpenedRun:
    """Open run `run_id` for training: a new one, or an unfinished one to resume.

    A run found in staging (a Prefect retry of the same flow run, or `resume`) keeps its start
    time and its finished shards; each part file is checked against what its shard must hold
    (schema, run, shard, seeds, hidden_dim, optimizer, epochs, curve lengths) and one that does
    not match is trained again. A published run is left as it is. Otherwise a new staging
    folder and manifest are made.
    """
    run_id = config.resume or run_id
    root = config.output_dir
    published = _find(root, run_id, staged=False)
    if published is not None:
        place = RunPlace(root, published)
        record = _manifest(place, staged=False)
        if record.get("run_id") != run_id or _compared(record["parameters"]) != _compared(
            config.parameters()
        ):
            raise RunError(
                f"run {run_id!r}: {storage.redact(place.published)!r} is already published "
                "by a run with another id or other parameters; give another run id"
            )
        return OpenedRun(
            run_id,
            datetime.fromisoformat(record["started_at"]),
            place,
            frozenset(),
            published=True,
            resumed=True,
        )
    staged = _find(root, run_id, staged=True)
    if staged is not None:
        place = RunPlace(root, staged)
        record = _manifest(place, staged=True)
        if _compared(record["parameters"]) != _compared(config.parameters()):
            raise RunError(
                f"run {run_id} was started with other parameters than these; "
                "resume it with its own (resume=<id> takes them from the run)"
            )
        started = datetime.fromisoformat(record["started_at"])
        take_lock(place, run_id)
        finished = finished_shards(place, config, run_id)
        record = {
            **record,
            # what the run is follows from its id and parameters, never from the staged file
            "run_id": run_id,
            "schema_version": SCHEMA_VERSION,
            "shards": len(plan_shards(config)),
            "status": STATUS_RUNNING,
            "attempts": [*record.get("attempts", []), _now_text()],
        }
        write_manifest(place, record)
        return OpenedRun(run_id, started, place, finished, published=False, resumed=True)
    if config.resume:
        resumed_config(config)  # raises the message naming what is there
    started = (now or datetime.now(UTC)).replace(microsecond=0)
    place = RunPlace(root, run_folder_name(run_id, started))
    write_manifest(
        place,
        {
            "format": MANIFEST_FORMAT,
            "schema_version": SCHEMA_VERSION,
            "run_id": run_id,
            "started_at": started.isoformat(),
            "parameters": config.parameters(),
            "versions": package_versions(),
            "shards": len(plan_shards(config)),
            "status": STATUS_RUNNING,
            "failed": [],
            "attempts": [_now_text()],
        },
    )
    take_lock(place, run_id)
    return OpenedRun(run_id, started, place, frozenset(), published=False, resumed=False)


def _now_text() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def finished_shards(place: RunPlace, config: SweepConfig, run_id: str) -> frozenset[str]:
    """Return the shards whose part files in staging hold exactly what they must; others are not."""
    plan = {shard.file_name: shard for shard in plan_shards(config)}
    fs, _ = storage.resolve(place.root)
    done = set()
    for entry in storage.list_folder(place.staging):
        shard = plan.get(entry.base_name)
        if (
            shard is not None
            and entry.type == pafs.FileType.File
            and part_matches(fs, entry.path, shard, config, run_id)
        ):
            done.add(shard.name)
    return frozenset(done)


def part_matches(
    fs: pafs.FileSystem, path: str, shard: Shard, config: SweepConfig, run_id: str
) -> bool:
    """Whether the part file at `path` holds exactly shard `shard` of run `run_id`; never raises."""
    try:
        if isinstance(fs, pafs.LocalFileSystem) and os.path.islink(path):
            return False  # the run would depend on a file outside it: train the shard again
        parquet = pq.ParquetFile(path, filesystem=fs)
        meta = parquet.schema_arrow.metadata or {}
        if (
            meta.get(META_SCHEMA_VERSION) != SCHEMA_VERSION.encode()
            or meta.get(META_RUN_ID) != run_id.encode()
            or meta.get(META_SHARD) != shard.name.encode()
            or not parquet.schema_arrow.equals(SCHEMA, check_metadata=False)
            or parquet.metadata.num_rows != len(shard)
        ):
            return False
        table = parquet.read(columns=["hidden_dim", "optimizer", "seed", "epochs"])
        curves = parquet.read(columns=["loss_curve"])["loss_curve"]
        lengths = pc.list_value_length(curves)
        return (
            table["seed"].to_pylist() == shard.seeds(config)
            and _all_equal(table["hidden_dim"], shard.hidden_dim)
            and _all_equal(table["optimizer"], shard.optimizer)
            and _all_equal(table["epochs"], config.epochs)
            and _all_equal(lengths, config.epochs)
        )
    except (OSError, pa.ArrowException, ValueError, KeyError):
        return False


def _all_equal(column: pa.ChunkedArray | pa.Array, value: Any) -> bool:
    return len(column) == 0 or bool(pc.all(pc.equal(column, value)).as_py())


def publish_run(place: RunPlace, failed: list[str]) -> str | None:
    """Finish the run: mark and publish it if nothing failed; return its location, else None.

    A run with failed shards stays in staging, its manifest naming them, for a resume.
    """
    record = _manifest(place, staged=True)
    record["finished_at"] = _now_text()
    if failed:
        record.update(status=STATUS_FAILED, failed=sorted(failed))
        write_manifest(place, record)
        release_lock(place)
        return None
    record.update(status=STATUS_COMPLETE, failed=[])
    write_manifest(place, record)
    release_lock(place)
    return storage.publish_folder(place.root, place.staging_names(), place.folder)


LOCK = "_writer"


def take_lock(place: RunPlace, run_id: str) -> None:
    """Mark this process as the one writing the run; refuse if a live process on this host is.

    A lock left by a process that died (a kill, a crash) or by another host is taken over:
    only a live writer on this machine can be told apart from a dead one.
    """
    me = f"{socket.gethostname()}:{os.getpid()}"
    names = place.staging_names(LOCK)
    try:
        holder = storage.read_bytes(storage.child(place.root, *names)).decode().strip()
    except (OSError, ValueError):
        holder = ""
    host, _, pid = holder.rpartition(":")
    if holder and holder != me and host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            pass  # the writer died: its lock is stale
        except PermissionError:  # alive, under another user
            raise RunError(_busy(run_id, holder)) from None
        else:
            raise RunError(_busy(run_id, holder))
    storage.write_file(place.root, names, lambda s: s.write(me.encode()), replace=True)


def _busy(run_id: str, holder: str) -> str:
    return (
        f"run {run_id} is being written right now by process {holder}; wait for it to end "
        "(or stop it) before resuming it"
    )


def release_lock(place: RunPlace) -> None:
    """Drop this run's writer mark (before the folder is published, so it never is)."""
    fs, path = storage.resolve(storage.child(place.root, *place.staging_names(LOCK)))
    with contextlib.suppress(OSError):  # FileNotFoundError included
        fs.delete_file(path)

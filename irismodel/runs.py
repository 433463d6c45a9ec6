"""A run's life on disk: its shards, its staging folder and manifest, resuming, publication."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from irismodel import storage
from irismodel.data import load_dataset
from irismodel.parameters import SweepConfig
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
    """One task's share of a sweep: seeds `start..stop-1` of a configuration on one data split."""

    hidden_dim: int
    optimizer: str
    index: int  # within its configuration and split: 0, 1, ...
    start: int
    stop: int
    split_seed: int = 0
    named_split: bool = False  # the run has several splits: the name says which

    @property
    def configuration(self) -> str:
        """The configuration's name, e.g. `h8-sgd`."""
        return f"h{self.hidden_dim}-{self.optimizer}"

    @property
    def name(self) -> str:
        """The shard's name, e.g. `h8-sgd-0003`, or `s2-h8-sgd-0003` on split seed 2 of several."""
        split = f"s{self.split_seed}-" if self.named_split else ""
        return f"{split}{self.configuration}-{self.index:04d}"

    @property
    def file_name(self) -> str:
        """The part file's name."""
        return self.name + FILE_SUFFIX

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
    except (OSError, ValueError, RecursionError) as error:
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
    if "split_seed" in stored:  # a run started before splits were an axis: its one split
        stored["split_seeds"] = [stored.pop("split_seed")]
    defaults = SweepConfig(output_dir=config.output_dir).parameters()
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
    return SweepConfig(**stored, resume=config.resume)


def finished_before(config: SweepConfig) -> frozenset[str]:
    """Return the shards the unfinished run `config.resume` already wrote and checked, if any."""
    if not config.resume:
        return frozenset()
    folder = _find(config.output_dir, config.resume, staged=True)
    if folder is None:
        return frozenset()
    return finished_shards(RunPlace(config.output_dir, folder), config, config.resume)


def open_run(
    config: SweepConfig,
    run_id: str,
    now: datetime | None = None,
    fingerprint: str | None = None,
) -> OpenedRun:
    """Open run `run_id` for training: a new one, or an unfinished one to resume.

    `fingerprint` is the data's (`Dataset.fingerprint`), computed here from `config.data_path`
    when not given. A run found in staging (a Prefect retry of the same flow run, or `resume`)
    keeps its start time and its finished shards, and must be of the same data; each part file
    is checked against what its shard must hold (schema, run, shard, data, seeds, hidden_dim,
    optimizer, epochs, curve lengths) and one that does not match is trained again. A published
    run is left as it is; one whose publication to an object store was cut short is finished.
    Otherwise a new staging folder and manifest are made.
    """
    run_id = config.resume or run_id
    root = config.output_dir
    if fingerprint is None:
        fingerprint = load_dataset(config.data_path).fingerprint()
    published = _find(root, run_id, staged=False)
    if published is not None:
        place = RunPlace(root, published)
        if _find(root, run_id, staged=True) == published:  # a publication cut short
            _finish_publication(place, run_id)
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
        check_same_data(record, fingerprint, run_id, config)
        started = datetime.fromisoformat(record["started_at"])
        take_lock(place, run_id)
        finished = finished_shards(place, config, run_id, fingerprint)
        record = {
            **record,
            # what the run is follows from its id and parameters, never from the staged file
            "run_id": run_id,
            "schema_version": SCHEMA_VERSION,
            "shards": len(plan_shards(config)),
            "data_fingerprint": fingerprint,
            "status": STATUS_RUNNING,
            "attempts": [*record.get("attempts", []), _now_text()],
        }
        write_manifest(place, record)
        return OpenedRun(run_id, started, place, finished, published=False, resumed=True)
    if config.resume:
        resumed_config(config)  # raises the message naming what is there
    started = (now or datetime.now(UTC)).replace(microsecond=0)
    place = RunPlace(root, run_folder_name(run_id, started))
    take_lock(place, run_id)
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
            "data_fingerprint": fingerprint,
            "status": STATUS_RUNNING,
            "failed": [],
            "attempts": [_now_text()],
        },
    )
    return OpenedRun(run_id, started, place, frozenset(), published=False, resumed=False)


def check_same_data(
    record: Mapping[str, Any], fingerprint: str, run_id: str, config: SweepConfig
) -> None:
    """Refuse to resume a run on data other than the data it started on."""
    stored = record.get("data_fingerprint")
    if stored is not None and stored != fingerprint:
        source = config.data_path or "the bundled Iris data"
        raise RunError(
            f"resume: run {run_id} was started on other data than {source!r} holds now "
            f"(data fingerprint {str(stored)[:12]}... then, {fingerprint[:12]}... now); a run is "
            "one dataset: restore the data it started on, or start a new run"
        )


def check_resumable(config: SweepConfig, fingerprint: str) -> None:
    """Refuse, before any work, to resume run `config.resume` on other data or while it is written.

    `open_run` checks the same again under the lock; this says it seconds earlier.
    """
    assert config.resume is not None
    folder = _find(config.output_dir, config.resume, staged=True)
    if folder is None:
        return  # open_run says what is there
    place = RunPlace(config.output_dir, folder)
    check_same_data(_manifest(place, staged=True), fingerprint, config.resume, config)
    if storage.is_uri(place.root):
        return
    path = os.path.join(storage.absolute(place.root), *place.staging_names(LOCK))
    with _HELD_GUARD:
        if path in _HELD:
            return
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return  # no mark, or none to read: nobody holds it
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(descriptor, 4096, 0).decode(errors="replace").strip()
            raise RunError(_busy(config.resume, holder or "another process")) from None
        finally:
            os.close(descriptor)  # closing drops the shared lock taken to look


def _now_text() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def finished_shards(
    place: RunPlace, config: SweepConfig, run_id: str, fingerprint: str | None = None
) -> frozenset[str]:
    """Return the shards whose part files in staging hold exactly what they must; others are not."""
    plan = {shard.file_name: shard for shard in plan_shards(config)}
    fs, _ = storage.resolve(place.root)
    done = set()
    for entry in storage.list_folder(place.staging):
        shard = plan.get(entry.base_name)
        if (
            shard is not None
            and entry.type == pafs.FileType.File
            and part_matches(fs, entry.path, shard, config, run_id, fingerprint)
        ):
            done.add(shard.name)
    return frozenset(done)


def part_matches(
    fs: pafs.FileSystem,
    path: str,
    shard: Shard,
    config: SweepConfig,
    run_id: str,
    fingerprint: str | None = None,
) -> bool:
    """Whether the part file at `path` holds exactly shard `shard` of run `run_id`; never raises.

    With `fingerprint`, its rows must also be of that data.
    """
    try:
        if isinstance(fs, pafs.LocalFileSystem) and os.path.islink(path):
            return False  # the run would depend on a file outside it: train the shard again
        parquet = pq.ParquetFile(path, filesystem=fs)
        if _part_problem(parquet, shard, run_id, fingerprint) is not None:
            return False
        table = parquet.read(columns=["hidden_dim", "optimizer", "seed", "epochs", "split_seed"])
        curves = parquet.read(columns=["loss_curve"])["loss_curve"]
        lengths = pc.list_value_length(curves)
        return (
            table["seed"].to_pylist() == shard.seeds(config)
            and _all_equal(table["hidden_dim"], shard.hidden_dim)
            and _all_equal(table["optimizer"], shard.optimizer)
            and _all_equal(table["split_seed"], shard.split_seed)
            and _all_equal(table["epochs"], config.epochs)
            and _all_equal(lengths, config.epochs)
        )
    except (OSError, pa.ArrowException, ValueError, KeyError):
        return False


def _part_problem(
    parquet: pq.ParquetFile, shard: Shard, run_id: str, fingerprint: str | None
) -> str | None:
    """Say what makes a part file not shard `shard` of run `run_id` (of `fingerprint`'s data).

    Reads the footer and the small data_fingerprint column only; None if nothing does.
    """
    meta = parquet.schema_arrow.metadata or {}
    if meta.get(META_SCHEMA_VERSION) != SCHEMA_VERSION.encode():
        return "it is not of this schema version"
    if not parquet.schema_arrow.equals(SCHEMA, check_metadata=False):
        return "it does not match the results schema"
    if meta.get(META_RUN_ID) != run_id.encode():
        return f"it belongs to run {meta.get(META_RUN_ID, b'?').decode(errors='replace')!r}"
    if meta.get(META_SHARD) != shard.name.encode():
        return f"it holds shard {meta.get(META_SHARD, b'?').decode(errors='replace')!r}"
    if parquet.metadata.num_rows != len(shard):
        return f"it holds {parquet.metadata.num_rows} rows, not the shard's {len(shard)}"
    if fingerprint is not None:
        column = parquet.read(columns=["data_fingerprint"])["data_fingerprint"]
        if not _all_equal(column, fingerprint):
            return "its rows are of other data than the run's"
    return None


def _all_equal(column: pa.ChunkedArray | pa.Array, value: Any) -> bool:
    return len(column) == 0 or bool(pc.all(pc.equal(column, value)).as_py())


def publish_run(place: RunPlace, failed: list[str], config: SweepConfig, run_id: str) -> str | None:
    """Finish the run: mark and publish it if nothing failed; return its location, else None.

    A run with failed shards stays in staging, its manifest naming them, for a resume. Before
    publication the staging folder is checked against the plan of `config`: every shard's part
    of this run and this data, nothing else; temporaries left by killed writers are removed.
    Raises `RunError` naming a missing or foreign file (the run then stays in staging).
    """
    record = _manifest(place, staged=True)
    record["finished_at"] = _now_text()
    if failed:
        record.update(status=STATUS_FAILED, failed=sorted(failed))
        write_manifest(place, record)
        release_lock(place)
        return None
    fingerprint = record.get("data_fingerprint")
    check_staged(place, config, run_id, fingerprint)
    record.update(
        status=STATUS_COMPLETE,
        failed=[],
        run_id=run_id,
        schema_version=SCHEMA_VERSION,
        shards=len(plan_shards(config)),
    )
    write_manifest(place, record)
    path = storage.publish_folder(place.root, place.staging_names(), place.folder, skip=(LOCK,))
    # held through the move, so a second writer never opens the run between them
    release_lock(place, published=True)
    return path


def check_staged(
    place: RunPlace, config: SweepConfig, run_id: str, fingerprint: str | None
) -> None:
    """Check a staging folder holds exactly the run's parts; remove temporaries left in it."""
    plan = {shard.file_name: shard for shard in plan_shards(config)}
    fs, _ = storage.resolve(place.root)
    seen = set()
    for entry in storage.list_folder(place.staging):
        name = entry.base_name
        shown = storage.redact(storage.child(place.staging, name))
        if name in (MANIFEST, LOCK):
            continue
        if name.startswith(".") and name.endswith(storage.TEMPORARY_SUFFIX):
            with contextlib.suppress(OSError):  # a writer killed mid-file: never published
                fs.delete_file(entry.path)
            continue
        shard = plan.get(name)
        if shard is None or entry.type != pafs.FileType.File:
            raise RunError(
                f"publish: {shown!r} is no part of run {run_id}'s plan; remove it, then finish "
                f"the run with `iris-sweep --resume {run_id}`"
            )
        try:
            problem = _part_problem(
                pq.ParquetFile(entry.path, filesystem=fs), shard, run_id, fingerprint
            )
        except (OSError, pa.ArrowException, ValueError, KeyError) as error:
            problem = f"it cannot be read ({storage.first_line(error)})"
        if problem is not None:
            raise RunError(
                f"publish: {shown!r} is not shard {shard.name} of run {run_id}: {problem}; "
                f"remove it, then finish the run with `iris-sweep --resume {run_id}`"
            )
        seen.add(name)
    missing = sorted(set(plan) - seen)
    if missing:
        raise RunError(
            f"publish: run {run_id} lacks {len(missing)} of its {len(plan)} parts "
            f"({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}); finish the run "
            f"with `iris-sweep --resume {run_id}`"
        )


def _finish_publication(place: RunPlace, run_id: str) -> None:
    """Finish moving a run to its published folder after a publication was cut short."""
    record = _manifest(place, staged=True)
    if record.get("status") != STATUS_COMPLETE:
        raise RunError(
            f"run {run_id}: both {storage.redact(place.published)!r} and its staging folder "
            "exist, and the staged run is not complete; move the files back by hand"
        )
    take_lock(place, run_id)
    names = place.staging_names()
    storage.publish_folder(place.root, names, place.folder, skip=(LOCK,), resume=True)
    release_lock(place, published=True)


LOCK = "_writer"
# Locks this process holds, by the lock file's path: a Prefect retry in the same process
# takes its own lock again.
_HELD: dict[str, int] = {}
_HELD_GUARD = threading.Lock()


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as stream:
            return stream.read().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> str:
    """A process's start time in clock ticks since boot (with the boot id: who it is), or ''."""
    try:
        with open(f"/proc/{pid}/stat") as stream:
            fields = stream.read().rsplit(")", 1)[1].split()
        return fields[19]  # field 22 of stat(5); the name in parentheses may hold spaces
    except (OSError, IndexError):
        return ""


def _identity(pid: int) -> str:
    return f"{socket.gethostname()}:{pid}:{_start_time(pid)}:{_boot_id()}"


def _alive(holder: str) -> bool:
    """Whether the writer `host:pid:start:boot` is a live process of this host (or unknown)."""
    host, _, rest = holder.partition(":")
    pid, _, rest = rest.partition(":")
    start, _, boot = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another host's mark cannot be told apart from a dead one
    if boot and boot != _boot_id():
        return False  # written before this machine restarted
    if not start:  # an old mark: the pid alone
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return _start_time(int(pid)) == start  # a pid reused by another process starts later


def take_lock(place: RunPlace, run_id: str) -> None:
    """Mark this process as the one writing the run; refuse if another live process is.

    Locally the mark is a file under an exclusive `flock`, taken atomically and released by
    the kernel when its process dies however it dies: a stale mark never blocks. On an object
    store (no locks there) the mark names host, pid, process start time and boot id, and is
    taken over when that process no longer runs.
    """
    names = place.staging_names(LOCK)
    me = _identity(os.getpid())
    if storage.is_uri(place.root):
        try:
            holder = storage.read_bytes(storage.child(place.root, *names)).decode().strip()
        except (OSError, ValueError):
            holder = ""
        if holder and holder != me and _alive(holder):
            raise RunError(_busy(run_id, holder))
        storage.write_file(place.root, names, lambda s: s.write(me.encode()), replace=True)
        return
    folder = os.path.join(storage.absolute(place.root), *names[:-1])
    path = os.path.join(folder, LOCK)
    with _HELD_GUARD:
        held = _HELD.get(path)
        if held is not None and _same_file(held, path):
            return
        if held is not None:
            _HELD.pop(path)
            os.close(held)
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as error:
            raise RunError(
                f"run {run_id}: cannot make its staging folder {folder!r} ({error.strerror})"
            ) from error
        while True:
            try:
                descriptor = os.open(
                    path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644
                )
            except FileNotFoundError:
                raise RunError(
                    f"run {run_id} was published meanwhile by another process; nothing is left "
                    "to do"
                ) from None
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                holder = os.pread(descriptor, 4096, 0).decode(errors="replace").strip()
                os.close(descriptor)
                if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise RunError(_busy(run_id, holder or "another process")) from None
                raise
            if _same_file(descriptor, path):
                break
            os.close(descriptor)  # the holder removed it as we opened it: try the new one
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, me.encode(), 0)
        _HELD[path] = descriptor


def _same_file(descriptor: int, path: str) -> bool:
    try:
        mine, there = os.fstat(descriptor), os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)


def _busy(run_id: str, holder: str) -> str:
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    who = f"process {pid} on {host}" if pid.isdigit() else holder
    return (
        f"run {run_id} is being written right now by {who}; wait for it to end "
        "(or stop it) before resuming it"
    )


def release_lock(place: RunPlace, published: bool = False) -> None:
    """Drop this run's writer mark; `published`: the run folder has moved there with it."""
    names = (place.folder, LOCK) if published else place.staging_names(LOCK)
    location = storage.child(place.root, *names)
    if storage.is_uri(place.root):  # the mark stays in staging: publication skips it
        fs, path = storage.resolve(storage.child(place.root, *place.staging_names(LOCK)))
        with contextlib.suppress(OSError):  # FileNotFoundError included
            fs.delete_file(path)
        return
    staged = os.path.join(storage.absolute(place.root), *place.staging_names(LOCK))
    with _HELD_GUARD:
        descriptor = _HELD.pop(staged, None)
        path = storage.absolute(location)
        if descriptor is not None and _same_file(descriptor, path):
            with contextlib.suppress(OSError):
                os.unlink(path)
        if descriptor is not None:
            os.close(descriptor)

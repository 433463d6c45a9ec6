"""A run's life on disk: its shard plan, staging folder and manifest, resuming, publication."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from irismodel.data import load_dataset

from .layout import (
    FILE_SUFFIX,
    LOCK,
    MANIFEST,
    MANIFEST_FORMAT,
    META_RUN_ID,
    META_SHARD,
    STAGING,
    STATUS_COMPLETE,
    STATUS_FAILED,
    STATUS_RUNNING,
    configuration_name,
    folder_run_id,
    is_temporary,
    run_folder_name,
    safe_id,
)
from .locations import child, first_line, list_folder, redact, resolve
from .lock import RunError, check_free, release_lock, take_lock
from .reader import read_manifest
from .schema import SCHEMA_VERSION, package_versions, schema_problem
from .writer import publish_folder, write_file

if TYPE_CHECKING:
    from irismodel.config import SweepConfig

# Parameters that do not change what a run computes: a resume may differ in them.
_NOT_COMPARED = ("resume", "output_dir", "force", "report")


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
        return f"{split}{configuration_name(self.hidden_dim, self.optimizer)}-{self.index:04d}"

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
    """Return every shard of a sweep: per split and configuration, seeds cut into shards."""
    size, total = config.seeds_per_shard, len(config.seed_set)
    named = len(config.split_set) > 1
    return [
        Shard(hidden_dim, optimizer, index, start, min(start + size, total), split, named)
        for split in config.split_set
        for hidden_dim in config.hidden_dims
        for optimizer in config.optimizers
        for index, start in enumerate(range(0, total, size))
    ]


@dataclass(frozen=True)
class RunFolder:
    """A run's folder: its output location (its file system resolved once) and its name there."""

    root: str  # the output location
    folder: str  # iris-sweep-<UTC start>Z-<run id>

    @functools.cached_property
    def _resolved(self) -> tuple[pafs.FileSystem, str]:
        return resolve(self.root)

    @property
    def fs(self) -> pafs.FileSystem:
        """The file system the run is on."""
        return self._resolved[0]

    def path(self, *names: str, staged: bool = True) -> str:
        """The path in `fs` of `names` in the run's staging folder (or in its published one)."""
        folders = (STAGING, self.folder) if staged else (self.folder,)
        return posixpath.join(self._resolved[1], *folders, *names)

    @property
    def staging(self) -> str:
        """The hidden folder the run's shards are written to until it is published."""
        return child(self.root, STAGING, self.folder)

    @property
    def published(self) -> str:
        """The folder of the published run."""
        return child(self.root, self.folder)

    def staging_names(self, *names: str) -> tuple[str, ...]:
        """Return the path of `names` inside the staging folder, relative to `root`."""
        return (STAGING, self.folder, *names)

    def entries(self) -> list[pafs.FileInfo]:
        """The files and folders in the staging folder ([] if there is none)."""
        return self.fs.get_file_info(pafs.FileSelector(self.path(), allow_not_found=True))


@dataclass(frozen=True)
class OpenedRun:
    """A run ready to train: where it lives, when it started, what is already done."""

    run_id: str
    started_at: datetime
    place: RunFolder
    finished: frozenset[str]  # names of shards whose part files were checked and kept
    published: bool  # the run was already published: nothing is left to do
    resumed: bool


def _run_folders(root: str, staged: bool = True) -> dict[str, str]:
    """Return the run folders in `root` (or in its staging folder) by the run id in their name."""
    entries = list_folder(child(root, STAGING) if staged else root)
    return {
        found: e.base_name
        for e in entries
        if e.type == pafs.FileType.Directory and (found := folder_run_id(e.base_name))
    }


def _folder(root: str, run_id: str, staged: bool = True) -> RunFolder | None:
    """Return the folder of run `run_id` (in staging, or published), if there is one."""
    name = _run_folders(root, staged).get(safe_id(run_id))
    return None if name is None else RunFolder(root, name)


def unfinished_runs(root: str) -> list[str]:
    """Return the ids of the runs whose shards wait in `root`'s staging folder."""
    return sorted(_run_folders(root))


def _manifest(place: RunFolder, staged: bool = True) -> dict[str, Any]:
    record = read_manifest(place.fs, place.path(staged=staged), RunError, "resume")
    if record.get("format") != MANIFEST_FORMAT:
        raise RunError(f"resume: {place.path(staged=staged)!r} is not an iris-sweep run folder")
    return record


def write_manifest(place: RunFolder, record: Mapping[str, Any]) -> None:
    """Write (or replace) the run's manifest in its staging folder."""
    blob = json.dumps(dict(record), indent=1, sort_keys=True).encode()
    write_file(place.root, place.staging_names(MANIFEST), lambda s: s.write(blob), replace=True)


def _compared(parameters: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in parameters.items() if k not in _NOT_COMPARED}


def resumed_config(config: SweepConfig) -> SweepConfig:
    """Return the config of the unfinished run `config.resume`, from its manifest.

    A resume trains with the run's own parameters; any other parameter given with it must
    either be left at its default or equal the run's.
    """
    # imported here: the configuration imports torch (devices), which the readers never need
    from irismodel.config import SweepConfig, validate_config

    assert config.resume is not None
    place = _folder(config.output_dir, config.resume)
    if place is None:
        done = _folder(config.output_dir, config.resume, staged=False)
        if done is not None:
            raise RunError(
                f"resume: run {config.resume} is already complete: {redact(done.published)}"
            )
        listed = ", ".join(unfinished_runs(config.output_dir)) or "none"
        raise RunError(
            f"resume: no unfinished run {config.resume!r} in "
            f"{redact(config.output_dir)!r}; unfinished runs there: {listed}"
        )
    stored = dict(_manifest(place)["parameters"])
    if "split_seed" in stored:  # a run started before splits were an axis: its one split
        stored["split_seeds"] = [stored.pop("split_seed")]
    defaults = SweepConfig().parameters()
    clashes = [
        name
        for name, value in _compared(config.parameters()).items()
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
    place = _folder(config.output_dir, config.resume) if config.resume else None
    if place is None:
        return frozenset()
    return finished_shards(place, config, config.resume)


def _now_text() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


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
    place = _folder(root, run_id, staged=False)
    if place is not None:
        if _folder(root, run_id) == place:  # a publication cut short
            _finish_publication(place, run_id)
        record = _manifest(place, staged=False)
        if record.get("run_id") != run_id or _compared(record["parameters"]) != _compared(
            config.parameters()
        ):
            raise RunError(
                f"run {run_id!r}: {redact(place.published)!r} is already published "
                "by a run with another id or other parameters; give another run id"
            )
        started = datetime.fromisoformat(record["started_at"])
        return OpenedRun(run_id, started, place, frozenset(), published=True, resumed=True)
    place = _folder(root, run_id)
    if place is not None:
        record = _manifest(place)
        if _compared(record["parameters"]) != _compared(config.parameters()):
            raise RunError(
                f"run {run_id} was started with other parameters than these; "
                "resume it with its own (resume=<id> takes them from the run)"
            )
        check_same_data(record, fingerprint, run_id, config)
        take_lock(place, run_id)
        finished = finished_shards(place, config, run_id, fingerprint)
        attempts = [*record.get("attempts", []), _now_text()]
        # what the run is follows from its id and parameters, never from the staged file
        record.update(run_id=run_id, schema_version=SCHEMA_VERSION, attempts=attempts)
        record.update(shards=len(plan_shards(config)), data_fingerprint=fingerprint)
        write_manifest(place, {**record, "status": STATUS_RUNNING})
        started = datetime.fromisoformat(record["started_at"])
        return OpenedRun(run_id, started, place, finished, published=False, resumed=True)
    if config.resume:
        resumed_config(config)  # raises the message naming what is there
    started = (now or datetime.now(UTC)).replace(microsecond=0)
    place = RunFolder(root, run_folder_name(run_id, started))
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
    place = _folder(config.output_dir, config.resume)
    if place is not None:  # else open_run says what is there
        check_same_data(_manifest(place), fingerprint, config.resume, config)
        check_free(place, config.resume)


def finished_shards(
    place: RunFolder, config: SweepConfig, run_id: str, fingerprint: str | None = None
) -> frozenset[str]:
    """Return the shards whose part files in staging hold exactly what they must; others are not."""
    plan = {shard.file_name: shard for shard in plan_shards(config)}
    return frozenset(
        plan[entry.base_name].name
        for entry in place.entries()
        if entry.base_name in plan
        and entry.type == pafs.FileType.File
        and _part_matches(place, entry.path, plan[entry.base_name], config, run_id, fingerprint)
    )


def _part_matches(
    place: RunFolder,
    path: str,
    shard: Shard,
    config: SweepConfig,
    run_id: str,
    fingerprint: str | None,
) -> bool:
    """Whether the part file at `path` holds exactly shard `shard` of run `run_id`; never raises.

    With `fingerprint`, its rows must also be of that data.
    """
    try:
        if isinstance(place.fs, pafs.LocalFileSystem) and os.path.islink(path):
            return False  # the run would depend on a file outside it: train the shard again
        parquet = pq.ParquetFile(path, filesystem=place.fs)
        if _part_problem(parquet, shard, run_id, fingerprint) is not None:
            return False
        table = parquet.read(columns=["hidden_dim", "optimizer", "seed", "epochs", "split_seed"])
        lengths = pc.list_value_length(parquet.read(columns=["loss_curve"])["loss_curve"])
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
    problem = schema_problem(parquet.schema_arrow)
    if problem is not None:
        return f"it {problem}"
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


def publish_run(
    place: RunFolder, failed: list[str], config: SweepConfig, run_id: str
) -> str | None:
    """Finish the run: mark and publish it if nothing failed; return its location, else None.

    A run with failed shards stays in staging, its manifest naming them, for a resume. Before
    publication the staging folder is checked against the plan of `config`: every shard's part
    of this run and this data, nothing else; temporaries left by killed writers are removed.
    Raises `RunError` naming a missing or foreign file (the run then stays in staging).
    """
    record = {**_manifest(place), "finished_at": _now_text()}
    if failed:
        write_manifest(place, {**record, "status": STATUS_FAILED, "failed": sorted(failed)})
        release_lock(place)
        return None
    check_staged(place, config, run_id, record.get("data_fingerprint"))
    record.update(status=STATUS_COMPLETE, failed=[], run_id=run_id)
    write_manifest(
        place, {**record, "schema_version": SCHEMA_VERSION, "shards": len(plan_shards(config))}
    )
    path = publish_folder(place.root, place.staging_names(), place.folder, skip=(LOCK,))
    # held through the move, so a second writer never opens the run between them
    release_lock(place, published=True)
    return path


def check_staged(
    place: RunFolder, config: SweepConfig, run_id: str, fingerprint: str | None
) -> None:
    """Check a staging folder holds exactly the run's parts; remove temporaries left in it."""
    plan = {shard.file_name: shard for shard in plan_shards(config)}
    hint = f"finish the run with `iris-sweep --resume {run_id}`"
    seen = set()
    for entry in place.entries():
        name, shown = entry.base_name, redact(child(place.staging, entry.base_name))
        if name in (MANIFEST, LOCK):
            continue
        if is_temporary(name):
            with contextlib.suppress(OSError):  # a writer killed mid-file: never published
                place.fs.delete_file(entry.path)
            continue
        shard = plan.get(name)
        if shard is None or entry.type != pafs.FileType.File:
            raise RunError(
                f"publish: {shown!r} is no part of run {run_id}'s plan; remove it, then {hint}"
            )
        try:
            parquet = pq.ParquetFile(entry.path, filesystem=place.fs)
            problem = _part_problem(parquet, shard, run_id, fingerprint)
        except (OSError, pa.ArrowException, ValueError, KeyError) as error:
            problem = f"it cannot be read ({first_line(error)})"
        if problem is not None:
            raise RunError(
                f"publish: {shown!r} is not shard {shard.name} of run {run_id}: {problem}; "
                f"remove it, then {hint}"
            )
        seen.add(name)
    missing = sorted(set(plan) - seen)
    if missing:
        raise RunError(
            f"publish: run {run_id} lacks {len(missing)} of its {len(plan)} parts "
            f"({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}); {hint}"
        )


def _finish_publication(place: RunFolder, run_id: str) -> None:
    """Finish moving a run to its published folder after a publication was cut short."""
    if _manifest(place).get("status") != STATUS_COMPLETE:
        raise RunError(
            f"run {run_id}: both {redact(place.published)!r} and its staging folder "
            "exist, and the staged run is not complete; move the files back by hand"
        )
    take_lock(place, run_id)
    publish_folder(place.root, place.staging_names(), place.folder, skip=(LOCK,), resume=True)
    release_lock(place, published=True)

"""A run's life on disk: its folder and manifest, opening and resuming it, its publication."""

from __future__ import annotations

import functools
import json
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow.fs as pafs

from irismodel.data import load_dataset

from . import layout
from .listing import read_manifest
from .locations import child, entries, list_folder, redact, resolve
from .lock import RunError, check_free, release_lock, take_lock
from .schema import SCHEMA_VERSION, package_versions
from .shards import check_staged, finished_shards, plan_shards
from .writer import publish_folder, write_file

if TYPE_CHECKING:
    from irismodel.parameters import SweepConfig

# Parameters that do not change what a run computes: a resume may differ in them.
_NOT_COMPARED = ("resume", "output_dir", "force", "report")


@dataclass(frozen=True)
class RunFolder:
    """A run's folder: its output location (its file system resolved once) and its name there."""

    root: str
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
        folders = (layout.STAGING, self.folder) if staged else (self.folder,)
        return posixpath.join(self._resolved[1], *folders, *names)

    @property
    def staging(self) -> str:
        """The hidden folder the run's shards are written to until it is published."""
        return child(self.root, layout.STAGING, self.folder)

    @property
    def published(self) -> str:
        """The folder of the published run."""
        return child(self.root, self.folder)

    def staging_names(self, *names: str) -> tuple[str, ...]:
        """Return the path of `names` inside the staging folder, relative to `root`."""
        return (layout.STAGING, self.folder, *names)

    def entries(self) -> list[pafs.FileInfo]:
        """The files and folders in the staging folder ([] if there is none)."""
        return entries(self.fs, self.path())


@dataclass(frozen=True)
class OpenedRun:
    """A run ready to train: where it lives, when it started, what is already done."""

    run_id: str
    started_at: datetime
    place: RunFolder
    finished: frozenset[str]  # names of shards whose part files were checked and kept
    published: bool  # the run was already published: nothing is left to do
    resumed: bool


def run_folders(root: str, staged: bool = True) -> dict[str, str]:
    """Return the run folders in `root` (or in its staging folder) by the run id in their name."""
    found = list_folder(child(root, layout.STAGING) if staged else root)
    folders = [e.base_name for e in found if e.type == pafs.FileType.Directory]
    return {layout.folder_run_id(name): name for name in folders if layout.folder_run_id(name)}


def _folder(root: str, run_id: str, staged: bool = True) -> RunFolder | None:
    name = run_folders(root, staged).get(layout.safe_id(run_id))
    return None if name is None else RunFolder(root, name)


def _manifest(place: RunFolder, staged: bool = True) -> dict[str, Any]:
    record = read_manifest(place.fs, place.path(staged=staged), RunError, "resume")
    if record.get("format") != layout.MANIFEST_FORMAT:
        raise RunError(f"resume: {place.path(staged=staged)!r} is not an iris-sweep run folder")
    return record


def write_manifest(place: RunFolder, record: Mapping[str, Any]) -> None:
    """Write (or replace) the run's manifest in its staging folder."""
    blob = json.dumps(dict(record), indent=1, sort_keys=True).encode()
    names = place.staging_names(layout.MANIFEST)
    write_file(place.root, names, lambda s: s.write(blob), replace=True)


def _record(config: SweepConfig, run_id: str, record: Mapping[str, Any], **changes: Any) -> dict:
    """A manifest: what the run is follows from its id and parameters, never from a stored file."""
    own = {"run_id": run_id, "schema_version": SCHEMA_VERSION, "shards": len(plan_shards(config))}
    return {**record, **own, **changes}


def _now_text() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def _compared(parameters: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in parameters.items() if k not in _NOT_COMPARED}


def resumed_config(config: SweepConfig) -> SweepConfig:
    """Return the config of unfinished run `config.resume`; other parameters: default or equal."""
    # imported here: the configuration imports torch (devices), which the readers never need
    from irismodel.parameters import SweepConfig

    run, root = config.resume, config.output_dir
    assert run is not None
    place = _folder(root, run)
    if place is None:
        done = _folder(root, run, staged=False)
        if done is not None:
            raise RunError(f"resume: run {run} is already complete: {redact(done.published)}")
        found = ", ".join(sorted(run_folders(root))) or "none"
        raise RunError(
            f"resume: no unfinished run {run!r} in {redact(root)!r}; unfinished runs there: {found}"
        )
    stored = dict(_manifest(place)["parameters"])
    if "split_seed" in stored:  # a run started before splits were an axis: its one split
        stored["split_seeds"] = [stored.pop("split_seed")]
    defaults = SweepConfig(output_dir=root).parameters()
    given = _compared(config.parameters()).items()
    clashes = [n for n, v in given if v != stored.get(n) and v != defaults.get(n)]
    if clashes:
        raise RunError(
            f"resume: run {run} was started with other values of {', '.join(clashes)}; "
            "a resume uses the run's own parameters, so leave them out or give the same"
        )
    # `force` is asked of this attempt, not of the run
    changes = {"output_dir": root, "force": config.force, "resume": run}
    return SweepConfig(**{**stored, **changes})


def finished_before(config: SweepConfig) -> frozenset[str]:
    """Return the shards the unfinished run `config.resume` already wrote and checked, if any."""
    place = _folder(config.output_dir, config.resume) if config.resume else None
    return frozenset() if place is None else finished_shards(place, config, config.resume)


def open_run(
    config: SweepConfig, run_id: str, now: datetime | None = None, fingerprint: str | None = None
) -> OpenedRun:
    """Open run `run_id` for training: a new one, or an unfinished one to resume.

    A staged run keeps its start time and checked shards, and must be of the same data
    (`fingerprint`, else from `config.data_path`); a published one is left (or finished).
    """
    run_id, root = config.resume or run_id, config.output_dir
    given = _compared(config.parameters())
    fingerprint = fingerprint or load_dataset(config.data_path).fingerprint()
    place = _folder(root, run_id, staged=False)
    if place is not None:
        if _folder(root, run_id) == place:  # a publication cut short
            _finish_publication(place, run_id)
        record = _manifest(place, staged=False)
        if record.get("run_id") != run_id or _compared(record["parameters"]) != given:
            raise RunError(
                f"run {run_id!r}: {redact(place.published)!r} is already published "
                "by a run with another id or other parameters; give another run id"
            )
        started = datetime.fromisoformat(record["started_at"])
        return OpenedRun(run_id, started, place, frozenset(), published=True, resumed=True)
    place = _folder(root, run_id)
    resumed = place is not None
    if resumed:
        record = _manifest(place)
        if _compared(record["parameters"]) != given:
            raise RunError(
                f"run {run_id} was started with other parameters than these; "
                "resume it with its own (resume=<id> takes them from the run)"
            )
        check_same_data(record, fingerprint, run_id, config)
    elif config.resume:
        resumed_config(config)  # raises the message naming what is there
    else:
        started = (now or datetime.now(UTC)).replace(microsecond=0)
        place = RunFolder(root, layout.run_folder_name(run_id, started))
        record = {"format": layout.MANIFEST_FORMAT, "started_at": started.isoformat(), "failed": [],
                  "parameters": config.parameters(), "versions": package_versions()}  # fmt: skip
    take_lock(place, run_id)
    finished = finished_shards(place, config, run_id, fingerprint) if resumed else frozenset()
    attempts = [*record.get("attempts", []), _now_text()]
    # imported here: provenance imports torch, which the readers never need
    from irismodel.provenance import provenance

    # this attempt's: a resume on another machine or library trains the rest there
    write_manifest(place, _record(config, run_id, record, data_fingerprint=fingerprint,
                                  status=layout.STATUS_RUNNING, attempts=attempts,
                                  provenance=provenance()))  # fmt: skip
    started = datetime.fromisoformat(record["started_at"])
    return OpenedRun(run_id, started, place, finished, published=False, resumed=resumed)


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
    """Refuse, before any work, to resume `config.resume` on other data or while it is written."""
    assert config.resume is not None
    place = _folder(config.output_dir, config.resume)
    if place is not None:  # else open_run says what is there
        check_same_data(_manifest(place), fingerprint, config.resume, config)
        check_free(place, config.resume)


def publish_run(
    place: RunFolder, failed: list[str], config: SweepConfig, run_id: str
) -> str | None:
    """Finish the run: mark and publish it if nothing failed; return its location, else None.

    Failed shards, or a staging folder `check_staged` refuses (`RunError`), keep it in staging.
    """
    record = {**_manifest(place), "finished_at": _now_text()}
    if failed:
        write_manifest(place, {**record, "status": layout.STATUS_FAILED, "failed": sorted(failed)})
        release_lock(place)
        return None
    check_staged(place, config, run_id, record.get("data_fingerprint"))
    record = _record(config, run_id, record, status=layout.STATUS_COMPLETE, failed=[])
    from .compared import compare_with_previous  # it needs this module's RunFolder

    write_manifest(place, {**record, **compare_with_previous(place, record)})
    path = publish_folder(place.root, place.staging_names(), place.folder, skip=(layout.LOCK,))
    # held through the move, so a second writer never opens the run between them
    release_lock(place, published=True)
    return path


def _finish_publication(place: RunFolder, run_id: str) -> None:
    """Finish moving a run to its published folder after a publication was cut short."""
    if _manifest(place).get("status") != layout.STATUS_COMPLETE:
        raise RunError(
            f"run {run_id}: both {redact(place.published)!r} and its staging folder "
            "exist, and the staged run is not complete; move the files back by hand"
        )
    take_lock(place, run_id)
    names = place.staging_names()
    publish_folder(place.root, names, place.folder, skip=(layout.LOCK,), resume=True)
    release_lock(place, published=True)

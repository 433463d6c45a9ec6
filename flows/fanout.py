"""The flow's bookkeeping: fan the shards out to tasks, count progress, collect failures."""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect.futures import as_completed

from irismodel import storage
from irismodel.data import Split
from irismodel.runs import Shard
from irismodel.sweep import RunContext, ShardSummary, reused_summary
from tasks.report import advance_progress, start_progress
from tasks.train import train_shard


class SweepFailed(RuntimeError):
    """Some shards failed after their retries; the finished ones are kept for a resume."""


@dataclass
class RunRecord:
    """What the command line must know of the run in this process, whatever ends it."""

    run_id: str | None = None  # known once the run is opened: the id a resume takes
    published: str | None = None  # the run folder, once published


LAST_RUN = RunRecord()


@dataclass
class ShardResults:
    """What came back from a run's shards: summaries of the finished, names of the failed."""

    summaries: list[ShardSummary] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    causes: dict[str, str] = field(default_factory=dict)
    submitted: int = 0  # shard task runs started by this attempt


def train_all(
    splits: dict[int, Split], shards: list[Shard], context: RunContext, finished: frozenset[str]
) -> ShardResults:
    """Run one task per shard not yet finished, side by side; wait for all of them.

    The shards an earlier attempt wrote (and `open-run` checked) count as done. Progress
    counts shards trained, evaluated and written.
    """
    results = ShardResults(summaries=[reused_summary(s) for s in shards if s.name in finished])
    progress = start_progress(len(shards), len(finished))
    pending = {}
    for shard in shards:
        if shard.name not in finished:
            future = train_shard.with_options(task_run_name=f"train-{shard.name}").submit(
                splits, shard, context
            )
            pending[future.task_run_id] = (shard, future)
    results.submitted = len(pending)
    done = len(finished)
    for future in as_completed([future for _, future in pending.values()]):
        future.wait()  # takes the final state from the runner, not from the API
        shard, _ = pending[future.task_run_id]
        if future.state.is_completed():
            results.summaries.append(future.result())
        else:
            results.failed.append(shard.name)
            results.causes[shard.name] = str(future.state.message)
        done += 1
        advance_progress(progress, done, len(shards))
    order = {shard.name: i for i, shard in enumerate(shards)}
    results.failed.sort(key=order.__getitem__)
    return results


def failure_message(results: ShardResults, total: int, context: RunContext) -> str:
    """Return the message of a run whose shards did not all finish.

    The kept shards are counted on disk: a task whose worker or scheduler died may have
    written its part before its state was lost.
    """
    first = results.failed[0]
    names = {f"{name}.parquet" for name in results.failed} | {s.part for s in results.summaries}
    try:
        on_disk = {e.base_name for e in storage.list_folder(context.place.staging)}
        kept = len(names & on_disk)
    except (OSError, ValueError):
        kept = total - len(results.failed)
    cause = results.causes.get(first)
    if cause in (None, "", "None"):
        cause = "no cause was reported (the worker or the scheduler running it may have died)"
    return (
        f"{len(results.failed)} of {total} shards did not finish after their retries: "
        f"{', '.join(results.failed[:20])}{' ...' if len(results.failed) > 20 else ''}. "
        f"{kept} of the {total} shards are written and kept, unpublished, in the run's staging "
        f"folder; finish the run with `iris-sweep --resume {context.flow_run_id}` (or Retry in "
        f"the UI), which trains only the missing shards. First failure, {first}: {cause}"
    )


def publication_failed(error: BaseException, context: RunContext) -> str:
    """Return the message of a run whose shards are all written but whose publication failed."""
    return (
        f"the run could not be published: {storage.first_line(error)}. Its shards are kept, "
        f"unpublished, in {storage.redact(context.place.staging)}; fix the cause, then finish "
        f"the run with `iris-sweep --resume {context.flow_run_id}`"
    )

"""The flow's bookkeeping: fan the shards out to tasks, count progress, collect failures."""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect.futures import as_completed

from irismodel.data import Split
from irismodel.runs import Shard
from irismodel.sweep import RunContext, ShardSummary, reused_summary
from tasks.report import advance_progress, start_progress
from tasks.train import train_shard


class SweepFailed(RuntimeError):
    """Some shards failed after their retries; the finished ones are kept for a resume."""


@dataclass
class ShardResults:
    """What came back from a run's shards: summaries of the finished, names of the failed."""

    summaries: list[ShardSummary] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    causes: dict[str, str] = field(default_factory=dict)
    submitted: int = 0  # shard task runs started by this attempt


def train_all(
    split: Split, shards: list[Shard], context: RunContext, finished: frozenset[str]
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
                split, shard, context
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
    """Return the message of a run whose shards did not all finish."""
    first = results.failed[0]
    kept = total - len(results.failed)
    return (
        f"{len(results.failed)} of {total} shards failed after their retries: "
        f"{', '.join(results.failed[:20])}{' ...' if len(results.failed) > 20 else ''}. "
        f"The {kept} finished ones are kept, unpublished, in the run's staging folder; finish "
        f"the run with `iris-sweep --resume {context.flow_run_id}` (or Retry in the UI), which "
        f"trains only the missing shards. First failure, {first}: {results.causes[first]}"
    )

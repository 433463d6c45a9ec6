"""The flow's bookkeeping: fan the shards out to tasks, count progress, collect failures."""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture, as_completed
from prefect.states import Completed, Failed, State

from flows.runners import ClusterLost, cluster_watch
from irismodel.data import Split
from irismodel.store import Shard, locations
from irismodel.sweep import RunContext, ShardSummary, reused_summary
from tasks.api import bounded
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
    submitted: int = 0  # shard task runs started by this attempt (and ended, as far as known)
    stopped: str | None = None  # why the wait ended before every shard did (a lost cluster)


def train_all(
    splits: dict[int, Split], shards: list[Shard], context: RunContext, finished: frozenset[str]
) -> ShardResults:
    """Run one task per shard not yet finished, side by side; wait for all of them.

    The shards an earlier attempt wrote (and `open-run` checked) count as done. Progress
    counts shards trained, evaluated and written.
    """
    results = ShardResults(summaries=[reused_summary(s) for s in shards if s.name in finished])
    flow_context = FlowRunContext.get()
    to_train = [shard for shard in shards if shard.name not in finished]
    watch = cluster_watch(flow_context.task_runner) if flow_context and to_train else None
    progress = start_progress(len(shards), len(finished))
    pending = {}
    for shard in to_train:
        future = train_shard.with_options(task_run_name=f"train-{shard.name}").submit(
            splits, shard, context
        )
        pending[future.task_run_id] = (shard, future)
    results.submitted = len(pending)
    done = len(finished)
    waiting = dict(pending)
    try:
        for future in _completed([future for _, future in pending.values()], watch):
            state = _final_state(future, watch)
            shard, _ = waiting.pop(future.task_run_id)
            if state.is_completed():
                results.summaries.append(state.result(_sync=True))  # type: ignore[call-arg]
            else:
                results.failed.append(shard.name)
                results.causes[shard.name] = str(state.message)
            done += 1
            advance_progress(progress, done, len(shards))
    except ClusterLost as lost:
        results.stopped = str(lost)
        _abandon(waiting, str(lost))
        for shard, _ in waiting.values():
            results.failed.append(shard.name)
            results.causes[shard.name] = str(lost)
        results.submitted -= len(waiting)  # their task runs may never reach a final state
    order = {shard.name: i for i, shard in enumerate(shards)}
    results.failed.sort(key=order.__getitem__)
    return results


def _completed(
    futures: list[PrefectFuture], watch: Callable[[], None] | None, poll: float = 1.0
) -> Iterator[PrefectFuture]:
    """Yield `futures` as they finish; while none does, call `watch` about every `poll` s."""
    if watch is None:
        yield from as_completed(futures)
        return
    finished: queue.SimpleQueue = queue.SimpleQueue()
    for future in futures:
        future.add_done_callback(finished.put)
    for _ in futures:
        while True:
            try:
                future = finished.get(timeout=poll)
            except queue.Empty:
                watch()
                continue
            yield future
            break


def _final_state(
    future: PrefectFuture, watch: Callable[[], None] | None, poll: float = 1.0
) -> State:
    """Return the final state of a finished shard task, taken from the runner, not the API.

    On a cluster the result is fetched from the worker that holds it once; if that worker has
    died, Dask runs the task again, and the wait goes on under `watch`.
    """
    if watch is None:
        future.wait()
        return future.state
    while True:
        try:
            outcome = future.wrapped_future.result(timeout=poll)
        except TimeoutError:  # rescheduled: its worker died before the result was fetched
            watch()
            continue
        except Exception as error:  # cancelled, or its workers kept dying under it
            return Failed(message=f"{type(error).__name__}: {locations.first_line(error)}")
        return outcome if isinstance(outcome, State) else Completed(data=outcome)


def _abandon(waiting: dict, why: str) -> None:
    """Cancel the shard tasks no worker will run, and mark their task runs Failed if possible.

    Cancelled, they cannot write into the staging folder behind the back of a later resume.
    """
    from prefect.client.orchestration import get_client

    for _, future in waiting.values():
        with contextlib.suppress(Exception):
            bounded("the Dask scheduler", future.wrapped_future.cancel, 10)

    def mark() -> None:
        with get_client(sync_client=True) as client:
            for task_run_id in waiting:
                client.set_task_run_state(task_run_id, Failed(message=why), force=True)

    with contextlib.suppress(Exception):  # the run's message says it all; the UI is a bonus
        bounded("the Prefect API", mark)


def failure_message(results: ShardResults, total: int, context: RunContext) -> str:
    """Return the message of a run whose shards did not all finish.

    The kept shards are counted on disk: a task whose worker or scheduler died may have
    written its part before its state was lost.
    """
    first = results.failed[0]
    names = {f"{name}.parquet" for name in results.failed} | {s.part for s in results.summaries}
    try:
        on_disk = {e.base_name for e in locations.list_folder(context.place.staging)}
        kept = len(names & on_disk)
    except (OSError, ValueError):
        kept = total - len(results.failed)
    cause = results.causes.get(first)
    if cause in (None, "", "None"):
        cause = "no cause was reported (the worker or the scheduler running it may have died)"
    if results.stopped:
        return (
            f"{results.stopped}; {len(results.failed)} of {total} shards did not finish: "
            f"{', '.join(results.failed[:20])}{' ...' if len(results.failed) > 20 else ''}. "
            f"{kept} of the {total} shards are written and kept, unpublished, in the run's "
            f"staging folder; start workers, then finish the run with "
            f"`iris-sweep --resume {context.flow_run_id}`, which trains only the missing shards"
        )
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
        f"the run could not be published: {locations.first_line(error)}. Its shards are kept, "
        f"unpublished, in {locations.redact(context.place.staging)}; fix the cause, then finish "
        f"the run with `iris-sweep --resume {context.flow_run_id}`"
    )

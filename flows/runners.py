"""How the flow runs: its Flow class, its task runner (Dask or threads) and its wait on shards."""

import contextlib
import math
import os
import queue
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prefect import Flow, settings
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture, as_completed
from prefect.states import Completed, Failed, State
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from irismodel.store.locations import first_line, within_time
from tasks.api import bounded

DASK_ADDRESS_VARIABLE = "IRIS_SWEEP_DASK_ADDRESS"
NO_WORKER_VARIABLE = "IRIS_SWEEP_DASK_NO_WORKER_TIMEOUT"
NO_WORKER_DEFAULT_SECONDS = 60.0


class SweepFlow(Flow):
    """A flow whose runs called from Python or the command line send heartbeats only if asked.

    Prefect 3 gives every flow run a heartbeat thread (each 180 s by default) whose stop waits
    for its next one-second tick, so each run ended up to a second late. Only a deployment's
    runs are watched for silence (`python -m cli.notify`), and they neither start here (the
    worker runs them without this call) nor lose theirs: prefect.yaml sets their frequency. A
    frequency set anywhere (environment, profile, `temporary_settings`) is kept.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if "heartbeat_frequency" in settings.get_current_settings().flows.model_fields_set:
            return super().__call__(*args, **kwargs)
        with settings.temporary_settings({settings.PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            return super().__call__(*args, **kwargs)

    def with_options(self, **options: Any) -> "SweepFlow":
        copy = super().with_options(**options)
        copy.__class__ = SweepFlow  # Prefect's copy is a plain Flow; this one keeps the rule
        return copy


def sweep_flow(**options: Any) -> Callable[[Callable[..., Any]], SweepFlow]:
    """Like `prefect.flow(**options)`, making a `SweepFlow`."""
    return lambda function: SweepFlow(function, **options)


class ClusterLost(RuntimeError):
    """The Dask cluster running the shards has had no workers for longer than the bound."""


def task_runner_from_env() -> TaskRunner:
    """Return `DaskTaskRunner(address=...)` if the variable names a scheduler, else threads."""
    if address := os.environ.get(DASK_ADDRESS_VARIABLE, "").strip():
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=address)
    # one thread per core: training is compute-bound, more threads only contend for the cores
    return ThreadPoolTaskRunner(max_workers=max(1, os.cpu_count() or 1))


def no_worker_timeout() -> float:
    """Return how long a Dask cluster may have no workers before the run fails, in seconds."""
    text = os.environ.get(NO_WORKER_VARIABLE, "").strip()
    if not text:
        return NO_WORKER_DEFAULT_SECONDS
    with contextlib.suppress(ValueError):
        if math.isfinite(seconds := float(text)) and seconds > 0:
            return seconds
    raise ValueError(f"{NO_WORKER_VARIABLE}: expected a positive number of seconds, got {text!r}")


def cluster_watch(runner: TaskRunner) -> Callable[[], None] | None:
    """Return a check to call while waiting on shards, or None where the runner needs none.

    On a Dask cluster it raises `ClusterLost` once the scheduler has reported no workers (or not
    answered) for `no_worker_timeout()` s, lest its tasks wait for ever without a word.
    """
    from prefect_dask import DaskTaskRunner

    if not isinstance(runner, DaskTaskRunner):
        return None
    bound = no_worker_timeout()
    client = runner.client
    address = getattr(client.scheduler, "address", None) or runner.address
    since: float | None = None

    def check() -> None:
        nonlocal since
        workers = 0  # a scheduler that does not answer runs nothing either
        with contextlib.suppress(Exception):
            workers = len(within_time("the Dask scheduler", client.nthreads, min(bound, 10.0)))
        if workers:
            since = None
        elif since is None:
            since = time.monotonic()
        elif time.monotonic() - since >= bound:
            raise ClusterLost(
                f"the Dask cluster at {address} has had no workers for {bound:g} s "
                f"({NO_WORKER_VARIABLE})"
            )

    return check


def wait_for_shards(
    futures: Sequence[PrefectFuture], names: Sequence[str], on_done: Callable[[], None]
) -> tuple[dict[str, str], str | None]:
    """Wait for every shard task, calling `on_done` as each ends; return what did not finish.

    Returns the causes of the shards that failed, by name in the order of `names`, and why the
    wait stopped before they all ended (a lost cluster: their tasks are then cancelled, so they
    cannot write behind a resume's back, and their task runs marked Failed), or None.
    """
    context = FlowRunContext.get()
    watch = cluster_watch(context.task_runner) if context and futures else None
    waiting = {future.task_run_id: name for future, name in zip(futures, names, strict=True)}
    failed: dict[str, str] = {}
    stopped = None
    try:
        for future, state in _final_states(futures, watch):
            name = waiting.pop(future.task_run_id)
            if not state.is_completed():
                failed[name] = str(state.message)
            on_done()
    except ClusterLost as lost:
        stopped = str(lost)
        _abandon([future for future in futures if future.task_run_id in waiting], stopped)
        failed.update(dict.fromkeys(waiting.values(), stopped))
    return {name: failed[name] for name in names if name in failed}, stopped


def _final_states(
    futures: Sequence[PrefectFuture], watch: Callable[[], None] | None
) -> Iterator[tuple[PrefectFuture, State]]:
    """Yield each future with its final state as it ends; on a cluster, `watch` meanwhile."""
    if watch is None:
        for future in as_completed(list(futures)):
            future.wait()
            yield future, future.state
        return
    ended: queue.SimpleQueue = queue.SimpleQueue()
    for future in futures:
        future.add_done_callback(ended.put)  # once: each call would add a waiter on the cluster
    for _ in futures:
        future = _polled(ended.get, watch)
        try:  # it times out when rescheduled (its worker died first): Dask runs it again
            outcome = _polled(future.wrapped_future.result, watch)
        except Exception as error:  # cancelled, or its workers kept dying under it
            outcome = Failed(message=f"{type(error).__name__}: {first_line(error)}")
        yield future, outcome if isinstance(outcome, State) else Completed(data=outcome)


def _polled(get: Callable[..., Any], watch: Callable[[], None], poll: float = 1.0) -> Any:
    """`get(timeout=poll)` until it answers, calling `watch` each time it times out."""
    while True:
        try:
            return get(timeout=poll)
        except (queue.Empty, TimeoutError):
            watch()


def _abandon(futures: list[PrefectFuture], why: str) -> None:
    """Cancel tasks no worker will run, and mark their task runs Failed where the API answers."""
    from prefect.client.orchestration import get_client

    for future in futures:
        with contextlib.suppress(Exception):
            bounded("the Dask scheduler", future.wrapped_future.cancel, 10)

    def mark() -> None:
        with get_client(sync_client=True) as client:
            for future in futures:
                client.set_task_run_state(future.task_run_id, Failed(message=why), force=True)

    with contextlib.suppress(Exception):  # the run's message says it all; the UI is a bonus
        bounded("the Prefect API", mark)

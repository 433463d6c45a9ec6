"""The shard task: train one shard's seeds at once, evaluate them and write their rows."""

import torch
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from irismodel.data import Split
from irismodel.engine import eager_loop_note, stop_requested
from irismodel.store import Shard
from irismodel.sweep import RunContext, ShardSummary, run_shard


def _retry_unless_stopped(task: object, task_run: object, state: object) -> bool:
    """Retry a failed shard, unless training was asked to stop (Ctrl-C): then end it now."""
    return not stop_requested()


@task(
    name="train",
    retries=2,
    retry_delay_seconds=1,
    retry_condition_fn=_retry_unless_stopped,
    cache_policy=NO_CACHE,  # the part file in the run's folder is the durable result
    persist_result=False,
)
def train_shard(splits: dict[int, Split], shard: Shard, context: RunContext) -> ShardSummary:
    """Train, evaluate and write one shard; hand back only where its rows are and a few counts."""
    # Parallelism comes from tasks running side by side; one torch thread each keeps them from
    # oversubscribing the cores and keeps results independent of what runs beside them.
    torch.set_num_threads(1)
    summary = run_shard(splits, shard, context)
    if summary.engine == "batched":  # the eager loop: 3-12x slower than the compiled ones
        get_run_logger().info(
            "%s: trained with the eager Python loop, 3-12x slower, because %s",
            shard.name,
            eager_loop_note(),
        )
    get_run_logger().info(
        "%s: %d seeds x %d epochs trained in %.2fs (%s), evaluated and written to %s",
        shard.name,
        summary.rows,
        context.config.epochs,
        summary.train_seconds,
        summary.engine,
        summary.part,
    )
    return summary

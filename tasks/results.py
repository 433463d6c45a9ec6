"""The task that writes a run's rows as one Parquet file."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from irismodel.results import STATUS_COMPLETE, STATUS_PARTIAL, file_name, to_table, write_results
from irismodel.sweep import RunContext


@task(
    name="write-results",
    retries=2,
    retry_delay_seconds=1,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def write_run_results(
    tables: Sequence[pa.Table], context: RunContext, failed: Sequence[str] = ()
) -> str:
    """Write the run's rows to `output_dir`, atomically, marked partial if configurations failed."""
    status = STATUS_PARTIAL if failed else STATUS_COMPLETE
    table = to_table(tables, context.config.parameters(), status=status, failed=failed)
    path = write_results(
        table, context.config.output_dir, file_name(context.flow_run_id, context.run_started_at)
    )
    get_run_logger().info("wrote %d rows (%s) to %s", table.num_rows, status, path)
    return path

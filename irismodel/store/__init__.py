"""A run on disk: its layout, schema, locations, writer, life (plan, resume, publish) and reader."""

from .listing import ResultsError, count_models, file_metadata, list_result_files
from .lock import RunError
from .reader import read_results
from .runs import (
    OpenedRun,
    RunFolder,
    check_resumable,
    finished_before,
    open_run,
    publish_run,
    resumed_config,
)
from .shards import Shard, most_work_first, plan_shards

__all__ = [
    "OpenedRun",
    "ResultsError",
    "RunError",
    "RunFolder",
    "Shard",
    "check_resumable",
    "count_models",
    "file_metadata",
    "finished_before",
    "list_result_files",
    "open_run",
    "most_work_first",
    "plan_shards",
    "publish_run",
    "read_results",
    "resumed_config",
]

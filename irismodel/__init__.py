"""iris-sweep's library: data, the notebook's model, training engines, metrics, results, report."""

import os

# Arrow's default allocator (mimalloc) gives each shard's Parquet buffers fresh pages that the
# kernel must zero on first touch; the C library's allocator reuses freed memory instead: a
# sweep spends about half as much time in the kernel and runs a few percent faster, in less
# memory (README, "Outside training"). Arrow reads this variable once, when pyarrow is imported,
# so it is set before any module here imports pyarrow. A pool the environment names is kept,
# and a process that imported pyarrow first keeps the pool it has.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

from typing import Any  # noqa: E402

from irismodel.store import read_results  # noqa: E402

__version__ = "0.1.0"
__all__ = ["load_model", "read_results"]


def __getattr__(name: str) -> Any:
    # load_model's module loads torch (seconds); readers of results alone never pay for it
    if name == "load_model":
        from irismodel.model import load_model

        return load_model
    raise AttributeError(f"module 'irismodel' has no attribute {name!r}")

"""iris-sweep's library: data, the notebook's model, training engines, metrics, results, report."""

from typing import Any

from irismodel.store import read_results

__version__ = "0.1.0"
__all__ = ["load_model", "read_results"]


def __getattr__(name: str) -> Any:
    # load_model's module loads torch (seconds); readers of results alone never pay for it
    if name == "load_model":
        from irismodel.model import load_model

        return load_model
    raise AttributeError(f"module 'irismodel' has no attribute {name!r}")

"""iris-sweep's library: data, the notebook's model, training engines, metrics, results, report."""

from irismodel.store import read_results

__version__ = "0.1.0"
__all__ = ["read_results"]

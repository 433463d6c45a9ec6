"""iris-sweep's library: data, the notebook's model, training engines, metrics, results, report."""

__version__ = "0.1.0"

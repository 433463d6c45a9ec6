"""Training engines: many seeds of one (hidden_dim, optimizer) at once, and the notebook's loop."""

from irismodel.native.build import eager_loop_note

from .batched import default_chunk_size, train_batched
from .predict import predict_proba
from .reference import train_reference
from .run import TrainingRun
from .stop import TrainingInterrupted, clear_stop, request_stop, stop_requested

__all__ = [
    "TrainingInterrupted",
    "TrainingRun",
    "clear_stop",
    "default_chunk_size",
    "eager_loop_note",
    "predict_proba",
    "request_stop",
    "stop_requested",
    "train_batched",
    "train_reference",
]

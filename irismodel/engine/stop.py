"""The stop request: one flag of the process that every training checks between epochs."""

import contextlib
from collections.abc import Iterator
from types import ModuleType


class TrainingInterrupted(RuntimeError):
    """A training stopped by `request_stop()` before its last epoch; it returns no results."""


_requested = False
# every compiled module the engine has trained with: they read their own copy without the GIL
_modules: list[ModuleType] = []


def request_stop() -> None:
    """Ask every training to raise `TrainingInterrupted` until `clear_stop()`; signal-safe."""
    global _requested
    _requested = True  # before the modules: one attached meanwhile reads it after joining
    for module in list(_modules):
        module.request_stop()


def clear_stop() -> None:
    """Withdraw the stop request, so that trainings started from now on run to the end."""
    global _requested
    _requested = False
    for module in list(_modules):
        module.clear_stop()


def stop_requested() -> bool:
    """Whether a stop request is pending."""
    return _requested


def attach(module: ModuleType) -> ModuleType:
    """Let the stop request reach a compiled module's loops; return the module."""
    if all(module is not known for known in _modules):
        _modules.append(module)
        if _requested:
            module.request_stop()
    return module


def interrupted(epoch: int, epochs: int) -> TrainingInterrupted:
    """The exception of a loop that saw the stop request after `epoch` epochs (as C++ words it)."""
    return TrainingInterrupted(
        f"training interrupted by a stop request after epoch {epoch} of {epochs}"
    )


def counted(stop: TrainingInterrupted, done: int, models: int) -> TrainingInterrupted:
    """`stop`'s message, completed with how many of the call's models were trained."""
    return TrainingInterrupted(f"{stop} ({done} of {models} models trained)")


@contextlib.contextmanager
def compiled_stops(module: ModuleType) -> Iterator[None]:
    """Raise a compiled loop's stop (its message says how far it went) as `TrainingInterrupted`."""
    try:
        yield
    except module.TrainingStopped as stop:
        raise TrainingInterrupted(str(stop)) from None

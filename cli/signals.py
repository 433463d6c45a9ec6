"""The command line's signals: Ctrl-C and SIGTERM stop training and keep what was written."""

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

from irismodel.engine import request_stop, stop_requested

# Set once SIGTERM arrives during a sweep. Here, not in a hook's closure or in `cli.sweep`
# (run as __main__, its functions are pickled by value): the flow's hooks go to Dask workers
# with the flow, and an event (its lock) cannot be pickled.
TERMINATED = threading.Event()


@contextlib.contextmanager
def interruptible() -> Iterator[threading.Event]:
    """Ctrl-C stops training at its next epoch; a second Ctrl-C stops waiting at once.

    SIGTERM before the flow runs exits with 143 at once (the server stops on the way out);
    while it runs, it stops training as the first Ctrl-C does, then exits with 143
    (`stop_on_sigterm`). Yields an event set once SIGTERM has arrived.

    The first SIGINT asks every training in this process to stop (`request_stop`): running
    shards end within an epoch, none is retried or started, the shards already written stay
    for a resume, and the run ends unpublished. A second SIGINT ends the process at once.
    """
    terminated = TERMINATED
    terminated.clear()
    if threading.current_thread() is not threading.main_thread():
        yield terminated
        return

    def on_interrupt(signum: int, frame: object) -> None:
        if stop_requested():
            # Not KeyboardInterrupt: an interpreter shutting down under running training
            # threads can abort in C++. Written shards are whole; the server dies with us.
            print("\niris-sweep: stopped at once", file=sys.stderr, flush=True)
            os._exit(130)
        request_stop()
        print(
            "\niris-sweep: stopping: the running shards end at their next epoch and the written "
            "ones are kept (Ctrl-C again to stop waiting)",
            file=sys.stderr,
        )

    def on_terminate(signum: int, frame: object) -> None:
        request_stop()  # running shards end within an epoch instead of holding the exit
        terminated.set()
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    previous_term = signal.signal(signal.SIGTERM, on_terminate)
    try:
        yield terminated
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)


def stop_on_sigterm() -> None:
    """For the rest of the flow run, let SIGTERM ask training to stop and raise nothing.

    Prefect's flow engine sets a SIGTERM handler that raises in the main thread wherever it is.
    Raised inside importlib's bookkeeping (the main thread imports as the first shards end) it
    leaves the global import lock held, and every other thread's next import waits for ever: a
    shard's, so the run never ends; raised inside a finalizer it is printed and dropped. This
    handler only asks training to stop and notes the signal (`TERMINATED`): the running shards
    end within an epoch, the flow ends with them unfinished, and the command exits with 143.
    """

    def on_terminate(signum: int, frame: object) -> None:
        request_stop()
        TERMINATED.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_terminate)

"""The stop request: every loop, in any thread, ends promptly with TrainingInterrupted."""

import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from run_checks import assert_runs_equal

from irismodel import engine, native
from irismodel.engine import TrainingInterrupted, eager, stop, train_batched, train_reference

LOOPS = ["fused", "native", "eager", "reference"]
LONG_SEEDS = list(range(16))  # two groups of the fused kernel
LONG_EPOCHS = 10**6  # minutes of training in any loop; the curves take 64 MB
STOP_BOUND_S = 10.0  # how long a stop may take at most: a correctness bound, not a benchmark
REPO = Path(__file__).resolve().parents[3]


def train(x, y, loop: str, seeds: list[int], epochs: int) -> engine.TrainingRun:
    if loop == "reference":
        return train_reference(x, y, 10, "adam", seeds, 0.01, epochs)
    return train_batched(x, y, 10, "adam", seeds, 0.01, epochs, loop=loop)


def interrupted_message(epochs: int, models: int) -> str:
    return (
        rf"^training interrupted by a stop request after epoch \d+ of {epochs} "
        rf"\(0 of {models} models trained\)$"
    )


@pytest.fixture
def trainings():
    """Start trainings in threads; whatever happens, none is left running after the test."""
    started: list[tuple[threading.Thread, dict]] = []

    def start(target) -> dict:
        outcome: dict = {}

        def run():
            try:
                outcome["result"] = target()
            except BaseException as error:  # noqa: BLE001 - the test inspects it
                outcome["error"] = error

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        started.append((thread, outcome))
        return outcome

    yield start
    engine.request_stop()
    for thread, _ in started:
        thread.join(STOP_BOUND_S)
    engine.clear_stop()


@pytest.fixture(autouse=True)
def no_stop_request():
    """Every test starts and ends without a stop request (also in the compiled module)."""
    engine.clear_stop()
    yield
    engine.clear_stop()
    if (module := native.load()) is not None:
        module.clear_stop()


def needs_module(request, loop: str) -> None:
    if loop in ("fused", "native"):
        request.getfixturevalue("built")


def wait_for_all(outcomes: list[dict], started: float) -> float:
    """Wait until every training ended; return the seconds since `started`."""
    deadline = started + STOP_BOUND_S
    while any(not outcome for outcome in outcomes) and time.perf_counter() < deadline:
        time.sleep(0.01)
    return time.perf_counter() - started


def test_request_and_clear_set_both_flags(built, iris):
    """request_stop() sets the Python flag and that of the compiled module the engine trains
    with; clear_stop() clears both."""
    x, y = iris
    train_batched(x, y, 4, "sgd", [0], 0.1, 1, loop="fused")
    module = native.load()
    assert not engine.stop_requested() and not module.stop_requested()
    engine.request_stop()
    assert engine.stop_requested() and module.stop_requested()
    engine.clear_stop()
    assert not engine.stop_requested() and not module.stop_requested()


def test_a_module_first_trained_with_after_the_request_takes_it_over(built, iris, monkeypatch):
    """The request reaches a compiled module that the engine takes up only after it was made."""
    x, y = iris
    module = native.load()
    monkeypatch.setattr(stop, "_modules", [])  # as if no training had used the module yet
    module.clear_stop()
    engine.request_stop()
    assert not module.stop_requested()
    with pytest.raises(TrainingInterrupted, match=r"after epoch 0 of 5 \(0 of 1 models trained"):
        train_batched(x, y, 4, "sgd", [0], 0.1, 5, loop="fused")
    assert module.stop_requested()


@pytest.mark.parametrize("loop", LOOPS)
def test_a_stop_request_ends_a_long_training(request, iris, trainings, loop):
    """A training of minutes, stopped from the main thread after 0.3 s, raises
    TrainingInterrupted within seconds; once cleared, training gives the same results as before."""
    needs_module(request, loop)
    x, y = iris
    before = train(x, y, loop, [0, 1], 5)
    outcome = trainings(lambda: train(x, y, loop, LONG_SEEDS, LONG_EPOCHS))
    time.sleep(0.3)
    engine.request_stop()
    seconds = wait_for_all([outcome], time.perf_counter())
    assert seconds < STOP_BOUND_S, f"the {loop} loop did not stop within {STOP_BOUND_S} s"
    assert "result" not in outcome
    with pytest.raises(TrainingInterrupted, match=interrupted_message(LONG_EPOCHS, 16)):
        raise outcome["error"]
    assert isinstance(outcome["error"], RuntimeError)
    engine.clear_stop()
    assert_runs_equal(train(x, y, loop, [0, 1], 5), before)


@pytest.mark.parametrize(
    "loops", [("fused", "fused"), ("fused", "native"), ("eager", "reference")], ids="+".join
)
def test_one_request_stops_trainings_in_two_other_threads(request, iris, trainings, loops):
    """A stop requested from the main thread ends the trainings of two other threads at once."""
    for loop in loops:
        needs_module(request, loop)
    x, y = iris
    outcomes = [
        trainings(lambda loop=loop: train(x, y, loop, LONG_SEEDS, LONG_EPOCHS)) for loop in loops
    ]
    time.sleep(0.3)
    engine.request_stop()
    assert wait_for_all(outcomes, time.perf_counter()) < STOP_BOUND_S
    for outcome in outcomes:
        assert isinstance(outcome.get("error"), TrainingInterrupted), outcome


@pytest.mark.parametrize("loop", LOOPS)
def test_a_training_started_during_a_request_stops_before_its_first_epoch(request, iris, loop):
    """While the request stands, new trainings stop at once, whatever their size."""
    needs_module(request, loop)
    x, y = iris
    engine.request_stop()
    message = "after epoch 0 of 50 (0 of 3 models trained)"
    with pytest.raises(TrainingInterrupted, match=message.replace("(", r"\(").replace(")", r"\)")):
        train(x, y, loop, [0, 1, 2], 50)


def test_a_chunked_training_counts_the_models_of_its_finished_chunks(iris, monkeypatch):
    """The eager loop trains chunk after chunk; the message counts the models already trained."""
    x, y = iris
    train_chunk, chunks = eager._train_chunk, []

    def stop_in_the_second_chunk(*args, **kwargs):
        if chunks:
            engine.request_stop()
        chunks.append(args)
        return train_chunk(*args, **kwargs)

    monkeypatch.setattr(eager, "_train_chunk", stop_in_the_second_chunk)
    with pytest.raises(TrainingInterrupted, match=r"after epoch 0 of 20 \(4 of 10 models trained"):
        train_batched(x, y, 5, "sgd", list(range(10)), 0.1, 20, loop="eager", chunk_size=4)
    assert len(chunks) == 2


def test_the_request_works_without_the_compiled_module(iris, tmp_path, monkeypatch):
    """Nothing built: the flag lives in Python alone, and the eager loop sees it."""
    monkeypatch.setenv("IRISMODEL_NATIVE_DIR", str(tmp_path))
    monkeypatch.setenv("IRISMODEL_NATIVE_BUILD", "0")  # nor built on first use
    monkeypatch.setattr(native, "_loaded", None)
    monkeypatch.setattr(stop, "_modules", [])
    x, y = iris
    engine.request_stop()
    assert engine.stop_requested()
    with pytest.raises(TrainingInterrupted, match="after epoch 0 of 30"):
        train_batched(x, y, 4, "sgd", [0], 0.1, 30)  # loop="auto": eager, nothing built
    engine.clear_stop()
    assert train_batched(x, y, 4, "sgd", [0], 0.1, 30).engine == "batched"


def run_child(script: str, interrupt_after: tuple[str, ...]) -> subprocess.CompletedProcess:
    """Run `script` in a fresh Python; send it a SIGINT after each line of `interrupt_after` that
    it prints (in that order), then wait for it to end."""
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    try:
        for expected in interrupt_after:
            lines.append(child.stdout.readline())
            assert lines[-1].strip() == expected, (lines, child.stderr.read())
            time.sleep(0.2)  # the threads are in the middle of training
            child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    return subprocess.CompletedProcess(
        child.args, child.returncode, "".join(lines) + stdout, stderr
    )


@pytest.mark.subprocess
def test_a_sigint_handler_that_requests_a_stop_ends_trainings_in_worker_threads(built):
    """As the command line will: a SIGINT handler that calls request_stop() ends the fused
    trainings of two worker threads promptly, and the process exits normally."""
    script = """
    import signal, threading
    import numpy as np
    from sklearn.datasets import load_iris
    from irismodel import engine
    data = load_iris()
    x, y = data.data.astype(np.float32), (data.target == 1).astype(np.float32)
    signal.signal(signal.SIGINT, lambda signum, frame: engine.request_stop())

    errors = []

    def work():
        try:
            engine.train_batched(x, y, 10, "sgd", list(range(16)), 0.1, 10**6, loop="fused")
        except engine.TrainingInterrupted as error:
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    print("started", flush=True)
    for thread in threads:
        thread.join()
    for error in errors:
        print("interrupted:", error)
    """
    done = run_child(script, interrupt_after=("started",))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("interrupted: training interrupted by a stop request") == 2


@pytest.mark.subprocess
@pytest.mark.skipif(sys.platform != "linux", reason="pthread_exit at finalization is glibc's")
def test_a_second_sigint_while_the_fused_kernel_runs_does_not_abort(built):
    """Two Ctrl-C with Python's default handler: the main thread leaves while daemon threads
    run the fused kernel over and over, and the interpreter finalizes under them. Their return
    into Python must not end in std::terminate ("terminate called without an active exception",
    SIGABRT), as it did with pybind11's GIL guard (CPython ends such threads with pthread_exit)."""
    script = """
    import signal, threading, time
    import torch
    from irismodel import native
    from irismodel.initial import initial_weights
    from irismodel.model import PARAMETER_NAMES
    signal.signal(signal.SIGINT, signal.default_int_handler)
    module = native.load()
    x, y = torch.randn(112, 4), (torch.rand(112) < 0.4).float()

    def work():
        stack = initial_weights(10, range(16), 4, threads=1)
        parameters, curves = [stack[name] for name in PARAMETER_NAMES], torch.empty(16, 200)
        while True:  # calls of a few milliseconds: some return during finalization
            module.train_fused(x, y, *parameters, curves, "sgd", 0.1, 200, 0.9, 0.9, 0.999, 1e-8)

    for _ in range(2):
        threading.Thread(target=work, daemon=True).start()
    print("started", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        print("first", flush=True)
    while True:
        time.sleep(1)
    """
    done = run_child(script, interrupt_after=("started", "first"))
    assert "terminate called" not in done.stderr
    assert done.returncode == -signal.SIGINT, done.stderr  # the second KeyboardInterrupt

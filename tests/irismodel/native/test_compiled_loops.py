"""The compiled loops: the native loop is the eager loop bit for bit; the fused kernel equals it
to float32 rounding, whatever the batch, the width or the thread count."""

import threading

import numpy as np
import pytest
import torch
from run_checks import assert_runs_equal

from irismodel.engine import train_batched
from irismodel.model import PARAMETER_NAMES
from irismodel.optimizers import OPTIMIZERS

# 13 models: a prime, so no chunk size or SIMD width divides it; 37 epochs: two full loss blocks
# of 16 and a partial one.
SEEDS = list(range(13))
EPOCHS = 37


@pytest.mark.parametrize("chunk_size", [None, 5], ids=["one-chunk", "chunks-of-5"])
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_native_loop_is_bit_identical_to_the_eager_loop(built, iris, optimizer, chunk_size, device):
    """The C++ loop gives the eager loop's loss curves and weights bit for bit, chunked or not."""
    x, y = iris
    kwargs = dict(device=device, chunk_size=chunk_size)
    eager = train_batched(x, y, 7, optimizer, SEEDS, 0.1, EPOCHS, loop="eager", **kwargs)
    compiled = train_batched(x, y, 7, optimizer, SEEDS, 0.1, EPOCHS, loop="native", **kwargs)
    assert (eager.engine, compiled.engine) == ("batched", "batched-native")
    # on GPU the same kernels run in the same order, but only CPU is bit-identical by design
    assert_runs_equal(compiled, eager, exact=device == "cpu")


def test_native_loop_matches_over_a_full_run(built, iris):
    """Over the notebook's 1000 epochs, Adam's bias corrections stay bit-identical to Python's."""
    x, y = iris
    eager = train_batched(x, y, 10, "adam", [0, 1, 2], 0.01, 1000, loop="eager")
    compiled = train_batched(x, y, 10, "adam", [0, 1, 2], 0.01, 1000, loop="native")
    assert_runs_equal(compiled, eager)


def test_auto_uses_the_built_module(built, iris, device):
    """Once built, loop="auto" trains with the fused kernel on CPU and the native loop on GPU
    (the fused kernel is CPU code), and records which in `engine`."""
    x, y = iris
    run = train_batched(x, y, 4, "sgd", [0], 0.1, 3, device=device)
    assert run.engine == ("batched-fused" if device == "cpu" else "batched-native")


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_fused_kernel_matches_the_eager_loop(built, iris, optimizer):
    """The fused kernel equals the eager loop to float32 rounding (its sums run in another
    order), for a model count no group size divides and a row count no block size divides."""
    x, y = iris
    eager = train_batched(x, y, 7, optimizer, SEEDS, 0.1, 20, loop="eager")
    fused = train_batched(x, y, 7, optimizer, SEEDS, 0.1, 20, loop="fused")
    assert fused.engine == "batched-fused"
    assert_runs_equal(fused, eager, exact=False)
    assert not np.array_equal(fused.loss_curves, eager.loss_curves)  # really another code path


def test_fused_kernel_diverges_as_the_eager_loop_does(built, iris):
    """At a learning rate that blows training up, the same weights end NaN, inf or finite as
    in the eager loop (the ReLU keeps NaN as torch.relu does), and the same curves break."""
    x, y = iris
    eager = train_batched(x, y, 10, "sgd", list(range(32)), 1e30, 30, loop="eager")
    fused = train_batched(x, y, 10, "sgd", list(range(32)), 1e30, 30, loop="fused")
    for name in PARAMETER_NAMES:
        for check in (np.isnan, np.isinf):
            expected = check(eager.parameters[name])
            np.testing.assert_array_equal(check(fused.parameters[name]), expected)
    finite = np.isfinite(eager.loss_curves).all(1)
    assert not finite.all()  # the rate really does blow up most models
    np.testing.assert_array_equal(np.isfinite(fused.loss_curves).all(1), finite)


def test_fused_kernel_works_for_any_width(built):
    """Hidden widths from 1 to 300 and 1 to 16 features train, and match the eager loop."""
    rng = np.random.default_rng(0)
    for hidden_dim, features, rows in [(1, 4, 5), (300, 4, 70), (3, 1, 130), (5, 16, 64)]:
        x = rng.normal(size=(rows, features)).astype(np.float32)
        y = (rng.random(rows) < 0.4).astype(np.float32)
        eager = train_batched(x, y, hidden_dim, "sgd", [0, 1, 2], 0.1, 10, loop="eager")
        fused = train_batched(x, y, hidden_dim, "sgd", [0, 1, 2], 0.1, 10, loop="fused")
        assert_runs_equal(fused, eager, exact=False)


def test_fused_kernel_refuses_what_it_cannot_train(built, iris):
    """More than 16 features, or an unknown loop name, raise before any training."""
    x, y = iris
    wide = np.tile(x, (1, 5))  # 20 features
    with pytest.raises(RuntimeError, match="loop='fused' runs on the CPU with at most 16 features"):
        train_batched(wide, y, 4, "sgd", [0], 0.1, 3, loop="fused")
    assert train_batched(wide, y, 4, "sgd", [0], 0.1, 3).engine == "batched-native"
    with pytest.raises(ValueError, match="loop must be one of auto, fused, native, eager, got 'j'"):
        train_batched(x, y, 4, "sgd", [0], 0.1, 3, loop="j")


def test_fused_kernel_is_bit_identical_on_every_thread_count(built, iris):
    """Groups of models are split across threads whole, so the thread count changes nothing."""
    x, y = iris
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = train_batched(x, y, 9, "momentum", list(range(40)), 0.1, 60, loop="fused")
        torch.set_num_threads(2)
        two = train_batched(x, y, 9, "momentum", list(range(40)), 0.1, 60, loop="fused")
    finally:
        torch.set_num_threads(before)
    assert_runs_equal(two, one)


@pytest.mark.parametrize("loop", ["native", "fused"])
def test_compiled_loops_run_in_parallel_threads_with_serial_results(built, iris, loop):
    """Two threads training side by side get exactly the models they get one after the other."""
    x, y = iris
    jobs = {"sgd": [0, 1, 2], "momentum": [3, 4]}
    serial = {opt: train_batched(x, y, 6, opt, s, 0.1, 50, loop=loop) for opt, s in jobs.items()}
    threaded = {}

    def train(opt):
        threaded[opt] = train_batched(x, y, 6, opt, jobs[opt], 0.1, 50, loop=loop)

    threads = [threading.Thread(target=train, args=(opt,)) for opt in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for opt in jobs:
        assert_runs_equal(threaded[opt], serial[opt])

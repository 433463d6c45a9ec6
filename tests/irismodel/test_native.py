"""Tests for the C++ epoch loop: bit-identical to the eager loop, explicit build, safe fallback."""

import threading

import numpy as np
import pytest
import torch
from sklearn.datasets import load_iris

from irismodel import native
from irismodel.engine import train_batched
from irismodel.model import PARAMETER_NAMES
from irismodel.optimizers import OPTIMIZERS

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(
            not torch.cuda.is_available(),
            reason="needs a CUDA device; the CPU path is covered by the same tests",
        ),
    ),
]
# 13 models: a prime, so no chunk size or SIMD width divides it; 37 epochs: two full loss blocks
# of 16 and a partial one.
SEEDS = list(range(13))
EPOCHS = 37


@pytest.fixture(scope="module")
def built():
    """Compile the extension once (seconds to a minute on a clean machine; a no-op if built).

    No skip when the compiler or ninja is missing: the build error fails these tests loudly.
    """
    return native.build()


@pytest.fixture(scope="module")
def iris():
    """All 150 rows, as in the notebook: float32 features, versicolor = 1."""
    data = load_iris()
    return data.data.astype(np.float32), (data.target == 1).astype(np.float32)


@pytest.fixture
def unbuilt(tmp_path, monkeypatch):
    """Point the build cache at an empty folder and forget any module loaded so far."""
    monkeypatch.setenv("IRISMODEL_NATIVE_DIR", str(tmp_path))
    monkeypatch.setattr(native, "_loaded", None)
    return tmp_path


def assert_runs_equal(actual, expected, exact=True):
    check = (
        np.testing.assert_array_equal
        if exact
        else lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    )
    check(actual.loss_curves, expected.loss_curves)
    for name in PARAMETER_NAMES:
        check(actual.parameters[name], expected.parameters[name])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("chunk_size", [None, 5], ids=["one-chunk", "chunks-of-5"])
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_native_loop_is_bit_identical_to_the_eager_loop(built, iris, optimizer, chunk_size, device):
    """The C++ loop gives the eager loop's loss curves and weights bit for bit, chunked or not."""
    x, y = iris
    kwargs = dict(device=device, chunk_size=chunk_size)
    eager = train_batched(x, y, 7, optimizer, SEEDS, 0.1, EPOCHS, native=False, **kwargs)
    compiled = train_batched(x, y, 7, optimizer, SEEDS, 0.1, EPOCHS, native=True, **kwargs)
    assert (eager.engine, compiled.engine) == ("batched", "batched-native")
    # on GPU the same kernels run in the same order, but only CPU is bit-identical by design
    assert_runs_equal(compiled, eager, exact=device == "cpu")


def test_native_loop_matches_over_a_full_run(built, iris):
    """Over the notebook's 1000 epochs, Adam's bias corrections stay bit-identical to Python's."""
    x, y = iris
    eager = train_batched(x, y, 10, "adam", [0, 1, 2], 0.01, 1000, native=False)
    compiled = train_batched(x, y, 10, "adam", [0, 1, 2], 0.01, 1000, native=True)
    assert_runs_equal(compiled, eager)


def test_auto_uses_the_built_loop(built, iris):
    """native=None trains with the C++ loop once it is built, and records that in `engine`."""
    x, y = iris
    assert train_batched(x, y, 4, "sgd", [0], 0.1, 3).engine == "batched-native"


def test_native_loop_runs_in_parallel_threads_with_serial_results(built, iris):
    """Two threads training side by side get exactly the models they get one after the other."""
    x, y = iris
    jobs = {"sgd": [0, 1, 2], "momentum": [3, 4]}
    serial = {opt: train_batched(x, y, 6, opt, s, 0.1, 50, native=True) for opt, s in jobs.items()}
    threaded = {}

    def train(opt):
        threaded[opt] = train_batched(x, y, 6, opt, jobs[opt], 0.1, 50, native=True)

    threads = [threading.Thread(target=train, args=(opt,)) for opt in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for opt in jobs:
        assert_runs_equal(threaded[opt], serial[opt])


def test_required_native_loop_that_is_not_built_raises(iris, unbuilt):
    """native=True without a build raises RuntimeError naming the build command."""
    x, y = iris
    with pytest.raises(RuntimeError, match=r"is not built.*python -m irismodel\.native build"):
        train_batched(x, y, 4, "sgd", [0], 0.1, 3, native=True)


def test_auto_falls_back_to_eager_when_not_built(iris, unbuilt):
    """native=None without a build trains with the Python loop and never compiles."""
    x, y = iris
    run = train_batched(x, y, 4, "sgd", [0], 0.1, 3)
    assert run.engine == "batched"
    assert not any(unbuilt.iterdir())  # nothing was compiled into the cache


def test_broken_build_falls_back_to_eager_or_raises_when_required(iris, unbuilt):
    """A library that fails to load means eager under native=None, RuntimeError under True."""
    x, y = iris
    native.library_path().parent.mkdir(parents=True)
    native.library_path().write_bytes(b"not a shared library")
    assert train_batched(x, y, 4, "sgd", [0], 0.1, 3).engine == "batched"
    with pytest.raises(RuntimeError, match="does not load"):
        train_batched(x, y, 4, "sgd", [0], 0.1, 3, native=True)


def test_build_location_follows_the_environment(monkeypatch, tmp_path):
    """IRISMODEL_NATIVE_DIR wins over TORCH_EXTENSIONS_DIR, which wins over the user cache."""
    monkeypatch.delenv("IRISMODEL_NATIVE_DIR", raising=False)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "torch"))
    assert native.cache_root() == tmp_path / "torch" / "irismodel"
    monkeypatch.setenv("IRISMODEL_NATIVE_DIR", str(tmp_path / "mine"))
    assert native.cache_root() == tmp_path / "mine"
    assert native.library_path().parent.parent == tmp_path / "mine"
    assert native.module_name() in native.library_path().name

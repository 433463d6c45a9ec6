"""Fixtures of the engine tests: the Iris arrays, the compiled module, devices and loops."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_iris

from irismodel import native
from irismodel.native.build import build

CUDA = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs a CUDA device; the CPU path is covered by the same tests",
)


@pytest.fixture(scope="session")
def built():
    """Compile the native module once (tens of seconds on a clean machine; a no-op if built).

    No skip when the compiler or ninja is missing: the build error fails these tests loudly.
    """
    return build()


@pytest.fixture(scope="module")
def iris():
    """All 150 rows, as in the notebook: float32 features, versicolor = 1."""
    data = load_iris()
    return data.data.astype(np.float32), (data.target == 1).astype(np.float32)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=CUDA)])
def device(request):
    """Each device the engines run on: the CPU, and the GPU where there is one."""
    return request.param


@pytest.fixture(
    params=[
        ("fused", "cpu"),
        ("eager", "cpu"),
        pytest.param(("eager", "cuda"), marks=CUDA),
        pytest.param(("native", "cuda"), marks=CUDA),
    ],
    ids=lambda pair: "-".join(pair),
)
def loop_device(request):
    """Each (loop, device) the batched engine runs: `loop="auto"` picks fused on CPU, native on
    GPU. The native loop on CPU is the eager loop bit for bit (native/test_compiled_loops.py).
    """
    loop, _ = request.param
    if loop != "eager":
        request.getfixturevalue("built")
    return request.param


@pytest.fixture(params=["compiled", "numpy"])
def evaluation(request, tmp_path, monkeypatch):
    """Each way models are evaluated: by the compiled module (built first), and by numpy alone,
    where the module is not built and not to be built (IRISMODEL_NATIVE_BUILD=0)."""
    if request.param == "compiled":
        request.getfixturevalue("built")
    else:
        monkeypatch.setenv("IRISMODEL_NATIVE_DIR", str(tmp_path))
        monkeypatch.setenv("IRISMODEL_NATIVE_BUILD", "0")
        monkeypatch.setattr(native, "_loaded", None)
    return request.param

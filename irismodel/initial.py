"""Initial weights of many seeds at once, bit for bit those of `manual_seed(s); NeuralNet(D, H, 1)`.

The compiled module (irismodel/native/init.cpp) draws them without a Python loop and without
the GIL; else nn.Linear's own init runs seed by seed. torch's CPU `uniform_` rounds
x * (to - from) + from once (fused multiply-add) in its AVX2/AVX-512 kernels and twice in its
baseline one; `torch_uniform_rounding()` asks torch which.
"""

import ctypes
import functools
import logging
import math
import operator
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from irismodel import native
from irismodel.model import PARAMETER_NAMES, initial_parameters, parameter_shapes
from irismodel.native import build

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "compiled", "torch")
ROUNDINGS = ("fused", "separate")  # x * (to - from) + from rounded once, or twice
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1  # what torch.manual_seed accepts
_MESSAGE_BYTES = 1024
_ARGUMENTS = (  # irismodel_initial_weights's, in order
    *(ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64),  # seeds, K, D, H
    *[ctypes.c_double] * 4,  # bounds of fc1.weight, fc1.bias, fc2.weight, fc2.bias
    ctypes.c_int,  # fused
    *[ctypes.c_void_p] * 4,  # the four outputs
    *(ctypes.c_int64, ctypes.c_char_p, ctypes.c_int64),  # threads, message, its capacity
)


def initial_weights(
    hidden_dim: int,
    seeds: Iterable[int] | np.ndarray,
    input_dim: int = 4,
    threads: int | None = None,
    backend: str = "auto",
) -> dict[str, torch.Tensor]:
    """Return each seed's initial weights of `NeuralNet(input_dim, hidden_dim, 1)`, stacked.

    PARAMETER_NAMES -> contiguous float32 CPU tensors (K, *shape), model k bit for bit from
    `seeds[k]`. `threads` (default `torch.get_num_threads()`): the compiled module's. `backend`:
    "compiled" (built first if need be), "torch", or "auto" ("compiled" if built and exact).
    Raises ValueError for a bad argument, RuntimeError when "compiled" cannot be had.
    """
    h = _positive("hidden_dim", hidden_dim)
    d = _positive("input_dim", input_dim)
    threads = torch.get_num_threads() if threads is None else _positive("threads", threads)
    words = seed_array(seeds)
    backend = resolve_backend(backend)
    k = words.size
    stack = {name: torch.empty(k, *shape) for name, shape in parameter_shapes(h, d).items()}
    if backend == "torch":
        for index, seed in enumerate(words.tolist()):  # manual_seed reads 2**64 - 1 as -1
            for name, values in initial_parameters(h, seed, d).items():
                stack[name][index] = values
    elif k:
        message = ctypes.create_string_buffer(_MESSAGE_BYTES)
        failed = _compiled()(
            words.ctypes.data,
            *(k, d, h, *_linear_bounds(d), *_linear_bounds(h)),
            int(torch_uniform_rounding() == "fused"),
            *(stack[name].data_ptr() for name in PARAMETER_NAMES),
            *(threads, message, _MESSAGE_BYTES),
        )
        if failed:
            raise RuntimeError(f"initial_weights: {message.value.decode(errors='replace')}")
    return stack


def resolve_backend(backend: str = "auto") -> str:
    """Return the backend `initial_weights(backend=backend)` runs here; "auto" never compiles."""
    if backend not in BACKENDS:
        raise ValueError(
            f"initial_weights: backend must be one of {', '.join(BACKENDS)}, got {backend!r}"
        )
    if backend == "torch":
        return backend
    if backend == "compiled":
        build.load_or_build()
    function = _compiled()
    rounding = torch_uniform_rounding()
    if function is not None and rounding is not None:
        return "compiled"
    if backend == "auto":
        if rounding is None and function is not None:
            _log_unknown_rounding()
        return "torch"
    reason = (
        "built, but this torch's uniform_ rounds neither as a fused multiply-add nor twice"
        if function is not None
        else f"{build.unavailable_reason() or 'built without it'}; {build.how_to_fix()}"
    )
    raise RuntimeError(f"initial_weights: backend='compiled' needs the compiled module, {reason}")


def seed_array(seeds: Iterable[int] | np.ndarray) -> np.ndarray:
    """Return `seeds` as uint64 as torch.manual_seed reads them; ValueError if not in its range."""
    if isinstance(seeds, np.ndarray):
        if seeds.ndim != 1 or seeds.dtype.kind not in "iu":
            raise ValueError(
                f"initial_weights: seeds must be a 1-D array of integers, got a {seeds.ndim}-D "
                f"array of {seeds.dtype}"
            )
        return seeds.astype(np.uint64)
    if isinstance(seeds, range) and max(abs(seeds.start), abs(seeds.stop)) < 2**63:
        return np.arange(seeds.start, seeds.stop, seeds.step, dtype=np.int64).astype(np.uint64)
    if isinstance(seeds, str | bytes):
        raise ValueError(f"initial_weights: seeds must be a sequence of integers, got {seeds!r}")
    values = list(seeds)
    array = np.asarray(values) if values else np.empty(0, np.int64)
    if array.ndim == 1 and array.dtype.kind in "iu":
        return array.astype(np.uint64)
    for value in values:  # past int64 with mixed signs, or not integers: find the bad one
        seed = operator.index(value) if hasattr(value, "__index__") else None
        if seed is None or not SEED_MIN <= seed <= SEED_MAX:
            raise ValueError(
                f"initial_weights: seeds must be integers from -2**63 to 2**64 - 1 (what "
                f"torch.manual_seed accepts), got {value!r}"
            )
    return np.array([operator.index(value) % 2**64 for value in values], dtype=np.uint64)


@functools.cache
def torch_uniform_rounding() -> str | None:
    """Return how this torch's CPU float32 `uniform_` rounds: "fused", "separate" or None."""
    count, bound = 4096, 1 / math.sqrt(8)
    x = torch.empty(count).uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(0))
    x = (x + 0.5).numpy()  # exact: x is a multiple of 2**-24 in [0, 1)
    drawn = torch.empty(count).uniform_(-bound, bound, generator=torch.Generator().manual_seed(0))
    low, high = np.float32(-bound), np.float32(bound)
    fused = (x.astype(np.float64) * np.float64(high - low) + low).astype(np.float32)  # as fmaf
    for rounding, values in zip(ROUNDINGS, (fused, x * (high - low) + low), strict=True):
        if np.array_equal(np.where(values == high, low, values), drawn.numpy()):  # ATen's wrap
            return rounding
    return None


def _positive(name: str, value: int) -> int:
    """`value` as an int if it is a positive integer (not a bool); else ValueError naming it."""
    number = operator.index(value) if hasattr(value, "__index__") else 0
    if isinstance(value, bool) or number < 1:
        raise ValueError(f"initial_weights: {name} must be a positive integer, got {value!r}")
    return number


def _linear_bounds(fan_in: int) -> tuple[float, float]:
    """nn.Linear's init bounds, in torch.nn.init's double arithmetic: weight's, then bias's."""
    gain = nn.init.calculate_gain("leaky_relu", math.sqrt(5))  # kaiming_uniform_(a=sqrt(5))
    return math.sqrt(3.0) * (gain / math.sqrt(fan_in)), 1 / math.sqrt(fan_in)


@functools.cache
def _log_unknown_rounding() -> None:
    logger.warning(
        "initial weights: this torch's uniform_ rounds in a way the compiled module does not "
        "reproduce; drawing them seed by seed with torch (slower, the same values)"
    )


def _compiled() -> Callable | None:
    """The compiled `irismodel_initial_weights`, or None where the module does not load."""
    return native.c_function("irismodel_initial_weights", _ARGUMENTS, ctypes.c_int)

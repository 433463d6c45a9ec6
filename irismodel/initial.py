"""Initial weights of many seeds at once, bit for bit those of `manual_seed(s); NeuralNet(D, H, 1)`.

`initial_weights(hidden_dim, seeds)` returns the stacked initial weights of every seed, as the
engine trains them: `PARAMETER_NAMES` -> fc1.weight (K, H, D), fc1.bias (K, H), fc2.weight
(K, 1, H), fc2.bias (K, 1), contiguous float32 CPU tensors, model k from `seeds[k]`. They are
drawn without a Python loop over the seeds, by one of:

- "compiled": the compiled module (irismodel/native/init.cpp), one `at::CPUGeneratorImpl` per
  seed, seeds spread over `threads` threads, without the GIL; used when the module is built.
- "numpy": mt19937 and torch's float formula written in numpy, vectorized over the seeds: a
  loop over the generator's 624 state words instead of over the seeds.
- "torch": a seeded `torch.Generator` and nn.Linear's own init, one seed at a time (the
  reference, and the way when this torch's rounding is not one the others reproduce).

How torch maps a seed: `manual_seed` takes any integer from -2**63 to 2**64 - 1 (a negative one
as its two's complement) and mt19937 keeps its low 32 bits, so seeds s and s + 2**32 give the
same weights. How torch rounds: its CPU `uniform_` computes x * (to - from) + from with one
rounding (a fused multiply-add) where ATen runs its AVX2 or AVX-512 kernels and with two in its
baseline kernel (ATEN_CPU_CAPABILITY=default); `torch_uniform_rounding()` finds out which, once
per process, from torch itself.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import math
import operator
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from irismodel import native
from irismodel.model import PARAMETER_NAMES, initial_parameters

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "compiled", "numpy", "torch")
ROUNDINGS = ("fused", "separate")  # x * (to - from) + from rounded once, or twice
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1  # what torch.manual_seed accepts
# Seeds per pass of the numpy generator: at most 4096, and its state and draws (4 B per word
# and seed) within 16 MiB, so that a pass stays in cache and H = 4096 does not take gigabytes.
_NUMPY_SEEDS, _NUMPY_BYTES = 4096, 16 << 20
_MESSAGE_BYTES = 1024


def initial_weights(
    hidden_dim: int,
    seeds: Sequence[int] | np.ndarray,
    input_dim: int = 4,
    threads: int | None = None,
    backend: str = "auto",
) -> dict[str, torch.Tensor]:
    """Return each seed's initial weights of `NeuralNet(input_dim, hidden_dim, 1)`, stacked.

    Seed k's slices equal `torch.manual_seed(seeds[k]); NeuralNet(input_dim, hidden_dim, 1)`'s
    parameters bit for bit (see the module docstring for the layout). `threads` (default
    `torch.get_num_threads()`) is how many threads the compiled backend uses. `backend` "auto"
    takes "compiled" when the compiled module is built (it never compiles it), else "numpy",
    and "torch" when this torch rounds in a way neither reproduces; "compiled" builds the module
    if needed. Raises ValueError for bad arguments, RuntimeError when the backend asked for
    cannot give this torch's values.
    """
    h = _positive("hidden_dim", hidden_dim)
    d = _positive("input_dim", input_dim)
    if threads is not None:
        threads = _positive("threads", threads)
    words = seed_array(seeds)
    backend = resolve_backend(backend)
    k = words.size
    stack = {
        "fc1.weight": torch.empty(k, h, d),  # (K, H, D)
        "fc1.bias": torch.empty(k, h),  # (K, H)
        "fc2.weight": torch.empty(k, 1, h),  # (K, 1, H)
        "fc2.bias": torch.empty(k, 1),  # (K, 1)
    }
    if k == 0:
        return stack
    if backend == "compiled":
        _fill_compiled(stack, words, torch_uniform_rounding() == "fused", threads)
    elif backend == "numpy":
        _fill_numpy(stack, words, torch_uniform_rounding() == "fused")
    else:
        _fill_torch(stack, words.tolist())  # manual_seed reads 2**64 - 1 as it reads -1
    return stack


def resolve_backend(backend: str = "auto") -> str:
    """Return the backend that `initial_weights(..., backend=backend)` runs here and now.

    "auto" is "compiled" when the compiled module is loaded or built (this never compiles it),
    else "numpy", or "torch" when this torch rounds in a way neither reproduces. A backend
    that cannot give this torch's values raises RuntimeError; an unknown name ValueError.
    """
    if backend not in BACKENDS:
        raise ValueError(
            f"initial_weights: backend must be one of {', '.join(BACKENDS)}, got {backend!r}"
        )
    if backend == "torch":
        return backend
    if torch_uniform_rounding() is None:
        if backend == "auto":
            _log_torch_fallback()
            return "torch"
        raise RuntimeError(
            f"initial_weights: backend={backend!r} cannot reproduce this torch's uniform_ "
            "(it rounds neither as a fused multiply-add nor twice); use backend='torch' or 'auto'"
        )
    if backend == "auto":
        module = native.load()  # never compiles: a training that wants the module builds it
        loaded = module is not None and _entry_point(module.__file__) is not None
        return "compiled" if loaded else "numpy"
    return backend


def _positive(name: str, value: int) -> int:
    """`value` as an int if it is a positive integer (not a bool); else ValueError naming it."""
    try:
        number = operator.index(value)
    except TypeError:
        number = 0
    if isinstance(value, bool) or number < 1:
        raise ValueError(f"initial_weights: {name} must be a positive integer, got {value!r}")
    return number


def seed_array(seeds: Sequence[int] | np.ndarray) -> np.ndarray:
    """Return `seeds` as uint64, as torch.manual_seed reads them (negatives as two's complement).

    Raises ValueError, naming `seeds`, for anything but integers from -2**63 to 2**64 - 1 in a
    sequence or a 1-D integer array.
    """
    if isinstance(seeds, np.ndarray):
        if seeds.ndim != 1 or seeds.dtype.kind not in "iu":
            raise ValueError(
                f"initial_weights: seeds must be a 1-D array of integers, got a {seeds.ndim}-D "
                f"array of {seeds.dtype}"
            )
        return seeds.astype(np.uint64)
    if isinstance(seeds, range) and _in_int64(seeds.start) and _in_int64(seeds.stop):
        return np.arange(seeds.start, seeds.stop, seeds.step, dtype=np.int64).astype(np.uint64)
    if isinstance(seeds, str | bytes):
        raise ValueError(f"initial_weights: seeds must be a sequence of integers, got {seeds!r}")
    values = list(seeds)
    if not values:
        return np.empty(0, np.uint64)
    array = np.asarray(values)
    if array.ndim == 1 and array.dtype.kind in "iu":
        return array.astype(np.uint64)
    # mixed signs past int64, floats, anything else: one by one, to name the bad one
    words = []
    for value in values:
        try:
            seed = operator.index(value)
        except TypeError:
            seed = None
        if seed is None or not SEED_MIN <= seed <= SEED_MAX:
            raise ValueError(
                f"initial_weights: seeds must be integers from -2**63 to 2**64 - 1 (what "
                f"torch.manual_seed accepts), got {value!r}"
            )
        words.append(seed % 2**64)
    return np.array(words, dtype=np.uint64)


def _in_int64(value: int) -> bool:
    return -(2**63) <= value < 2**63


@functools.cache
def torch_uniform_rounding() -> str | None:
    """Return how this torch's CPU float32 `uniform_` rounds x * (to - from) + from, from torch.

    "fused" (once), "separate" (twice), or None when it matches neither. Found once per process:
    values of x come from `uniform_(-0.5, 0.5)`, where both roundings are exact, then the same
    draws at a bound where the two differ are compared with each.
    """
    count, bound = 4096, 1 / math.sqrt(8)
    x = torch.empty(count).uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(0))
    x = (x + 0.5).numpy()  # exact: x is a multiple of 2**-24 in [0, 1)
    drawn = torch.empty(count).uniform_(-bound, bound, generator=torch.Generator().manual_seed(0))
    drawn = drawn.numpy()
    for rounding in ROUNDINGS:
        if np.array_equal(_scale(x, bound, rounding == "fused"), drawn):
            return rounding
    return None


def _scale(x: np.ndarray, bound: float, fused: bool) -> np.ndarray:
    """Map x in [0, 1) to `uniform_(-bound, bound)`'s float32 values as ATen's CPU kernel does."""
    low, high = np.float32(-bound), np.float32(bound)
    span = high - low
    if fused:  # exact in float64 (48-bit product, 49-bit sum), then rounded once, as fmaf does
        values = (x.astype(np.float64) * np.float64(span) + np.float64(low)).astype(np.float32)
    else:
        values = x * span + low
    return np.where(values == high, low, values)  # ATen: a value rounded up to `to` is `from`


def _linear_bounds(fan_in: int) -> tuple[float, float]:
    """nn.Linear's init bounds: kaiming_uniform_(weight, a=sqrt(5)), then its bias's."""
    # torch.nn.init.kaiming_uniform_'s double arithmetic, step for step
    gain = nn.init.calculate_gain("leaky_relu", math.sqrt(5))
    std = gain / math.sqrt(fan_in)
    return math.sqrt(3.0) * std, 1 / math.sqrt(fan_in)


@functools.cache
def _log_torch_fallback() -> None:
    logger.warning(
        "initial weights: this torch's uniform_ rounds in a way neither the compiled nor the "
        "numpy generator reproduces; drawing them seed by seed with torch (slower, same values)"
    )


@functools.cache
def _entry_point(path: str) -> ctypes._CFuncPtr | None:
    """The compiled function of the library at `path`, or None if it has none (older sources)."""
    try:
        function = ctypes.CDLL(path).irismodel_initial_weights
    except (OSError, AttributeError):
        logger.debug("no initial-weights function in %s", path, exc_info=True)
        return None
    pointer, int64, double = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double
    function.argtypes = [
        pointer,  # seeds
        int64,  # models
        int64,  # input dim
        int64,  # hidden dim
        double,  # fc1.weight bound
        double,  # fc1.bias bound
        double,  # fc2.weight bound
        double,  # fc2.bias bound
        ctypes.c_int,  # fused
        pointer,  # fc1.weight
        pointer,  # fc1.bias
        pointer,  # fc2.weight
        pointer,  # fc2.bias
        int64,  # threads
        ctypes.c_char_p,  # message
        int64,  # message capacity
    ]
    function.restype = ctypes.c_int
    return function


def _fill_compiled(
    stack: dict[str, torch.Tensor], seeds: np.ndarray, fused: bool, threads: int | None
) -> None:
    module = native.load_or_build()
    function = _entry_point(module.__file__) if module is not None else None
    if function is None:
        reason = native.unavailable_reason() or "built without the initial-weights function"
        raise RuntimeError(
            f"initial_weights: backend='compiled' needs the compiled module, which is {reason}; "
            f"{native.how_to_fix()}"
        )
    k, h, d = stack["fc1.weight"].shape
    message = ctypes.create_string_buffer(_MESSAGE_BYTES)
    failed = function(
        seeds.ctypes.data,
        k,
        d,
        h,
        *_linear_bounds(d),
        *_linear_bounds(h),
        int(fused),
        *(stack[name].data_ptr() for name in PARAMETER_NAMES),
        threads if threads is not None else torch.get_num_threads(),
        message,
        _MESSAGE_BYTES,
    )
    if failed:
        raise RuntimeError(f"initial_weights: {message.value.decode(errors='replace')}")


def _fill_torch(stack: dict[str, torch.Tensor], seeds: Sequence[int]) -> None:
    k, h, d = stack["fc1.weight"].shape
    for index, seed in enumerate(seeds):
        for name, values in initial_parameters(h, seed, d).items():
            stack[name][index] = values


def _fill_numpy(stack: dict[str, torch.Tensor], seeds: np.ndarray, fused: bool) -> None:
    k, h, d = stack["fc1.weight"].shape
    # nn.Linear's draws, in order: (parameter, how many values, bound)
    fc1_weight, fc1_bias = _linear_bounds(d)
    fc2_weight, fc2_bias = _linear_bounds(h)
    draws = (
        ("fc1.weight", h * d, fc1_weight),
        ("fc1.bias", h, fc1_bias),
        ("fc2.weight", h, fc2_weight),
        ("fc2.bias", 1, fc2_bias),
    )
    outputs = {name: stack[name].numpy().reshape(k, -1) for name in PARAMETER_NAMES}
    total = sum(count for _, count, _ in draws)
    chunk = max(1, min(_NUMPY_SEEDS, _NUMPY_BYTES // (4 * (_N + total))))
    for lo in range(0, k, chunk):
        part = seeds[lo : lo + chunk]
        words = mt19937_outputs((part & np.uint64(0xFFFFFFFF)).astype(np.uint32), total)
        first = 0
        for name, count, bound in draws:
            x = (words[first : first + count] & np.uint32(0xFFFFFF)).astype(np.float32)
            x *= np.float32(2**-24)
            outputs[name][lo : lo + part.size] = _scale(x, bound, fused).T
            first += count


# mt19937 (Matsumoto and Nishimura), as at::mt19937 (ATen/core/MT19937RNGEngine.h) runs it
_N, _M = 624, 397
_MATRIX_A = np.uint32(0x9908B0DF)
_UPPER, _LOWER = np.uint32(0x80000000), np.uint32(0x7FFFFFFF)
_INIT_MULTIPLIER = np.uint32(1812433253)


def mt19937_outputs(seeds: np.ndarray, count: int) -> np.ndarray:
    """Return the first `count` 32-bit outputs of mt19937 seeded with each uint32 of `seeds`.

    Shape (count, K): one row per draw, one column per seed, so that every step is one numpy
    operation over all the seeds. Only the state words the outputs need are computed.
    """
    k = seeds.size
    state = np.empty((_N, k), np.uint32)  # (624, K)
    first = min(count, _N)
    # the first twist's row i reads rows i, i + 1 and i + 397 of the seeded state
    needed = _N if first > _N - _M else first + _M
    state[0] = seeds
    mixed = np.empty(k, np.uint32)
    for j in range(1, needed):
        np.right_shift(state[j - 1], 30, out=mixed)
        np.bitwise_xor(mixed, state[j - 1], out=mixed)
        np.multiply(mixed, _INIT_MULTIPLIER, out=mixed)
        np.add(mixed, np.uint32(j), out=state[j])
    outputs = np.empty((count, k), np.uint32)  # (count, K)
    for done in range(0, count, _N):
        rows = min(count - done, _N)
        _twist(state, rows)
        _temper(state[:rows], outputs[done : done + rows])
    return outputs


def _twist(state: np.ndarray, rows: int) -> None:
    """Replace the first `rows` rows of `state` by those of the next state (at::mt19937's order).

    Row i of the next state reads rows i and i + 1 of this one and row i + 397 modulo 624, which
    past the end is a row of the next state already made; so it goes in blocks whose inputs are
    all known: [0, 227), [227, 454), [454, 623), then row 623, which reads the new row 0.
    """
    for lo, hi in ((0, _N - _M), (_N - _M, 2 * (_N - _M)), (2 * (_N - _M), _N - 1), (_N - 1, _N)):
        hi = min(hi, rows)
        if hi <= lo:
            return
        current = state[lo:hi]
        following = state[lo + 1 : hi + 1] if hi < _N else state[:1]
        far = state[(lo + _M) % _N : (lo + _M) % _N + (hi - lo)]
        mixed = (current & _UPPER) | (following & _LOWER)
        state[lo:hi] = far ^ (mixed >> np.uint32(1)) ^ ((following & np.uint32(1)) * _MATRIX_A)


def _temper(rows: np.ndarray, out: np.ndarray) -> None:
    """mt19937's tempering of state rows into outputs."""
    y = rows ^ (rows >> np.uint32(11))
    y ^= (y << np.uint32(7)) & np.uint32(0x9D2C5680)
    y ^= (y << np.uint32(15)) & np.uint32(0xEFC60000)
    np.bitwise_xor(y, y >> np.uint32(18), out=out)

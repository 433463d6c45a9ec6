"""Predictions of many trained models at once, from their stacked final parameters."""

import ctypes
import functools

import numpy as np

from irismodel import native

_POINTER, _INT = ctypes.c_void_p, ctypes.c_int64
_ARGUMENTS = (_POINTER, _INT, _INT, *[_POINTER] * 4, _INT, _INT, _POINTER)  # x, N, D, w1..b2, K, H


def predict_proba(parameters: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Return P(positive) in float64 for every model in `parameters` (K) and row of x: (K, N)."""
    w1, b1 = parameters["fc1.weight"], parameters["fc1.bias"]  # (K, H, D), (K, H)
    w2, b2 = parameters["fc2.weight"][:, 0, :], parameters["fc2.bias"][:, 0]  # (K, H), (K,)
    arrays = [np.ascontiguousarray(a, np.float64) for a in (x, w1, b1, w2, b2)]
    logits = _compiled_logits(*arrays)
    logits = _einsum_logits(*arrays) if logits is None else logits  # (K, N)
    with np.errstate(over="ignore", invalid="ignore"):
        return 1.0 / (1.0 + np.exp(-logits))


def _einsum_logits(*arrays: np.ndarray) -> np.ndarray:
    x, w1, b1, w2, b2 = arrays
    hidden = np.maximum(np.einsum("nd,khd->knh", x, w1) + b1[:, None], 0)  # (K, N, H)
    return np.einsum("knh,kh->kn", hidden, w2) + b2[:, None]


def _compiled_logits(*arrays: np.ndarray, checked: bool = True) -> np.ndarray | None:
    (k, h, d), n = arrays[1].shape, len(arrays[0])
    function = native.c_function("irismodel_logits", _ARGUMENTS, None)
    shapes = [a.shape for a in arrays] == [(n, d), (k, h, d), (k, h), (k, h), (k,)]
    if function is None or not shapes or (checked and not _sums_as_einsum()):
        return None  # not built, or not the shapes einsum takes, or a numpy that sums otherwise
    logits = np.empty((k, n))
    x, *weights = (a.ctypes.data for a in arrays)
    function(x, n, d, *weights, k, h, logits.ctypes.data)
    return logits


@functools.cache
def _sums_as_einsum() -> bool:
    """Whether the compiled logits equal einsum's here, for networks of 1 to 20 hidden units."""
    rng = np.random.default_rng(0)
    for h in range(1, 21):  # one block of eight units, two, and the tails
        shapes = ((29, 4), (7, h, 4), (7, h), (7, h), (7,))
        arrays = [rng.standard_normal(s) * 4.0 ** rng.integers(-9, 9, s) for s in shapes]
        arrays = [a.astype(np.float32).astype(np.float64) for a in arrays]  # as trained weights
        if not np.array_equal(_compiled_logits(*arrays, checked=False), _einsum_logits(*arrays)):
            return False
    return True

"""Predictions of many trained models at once, from their stacked final parameters."""

from __future__ import annotations

import numpy as np


def predict_proba(parameters: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Return P(positive) for every model in `parameters` (K stacked) and row of x: (K, N)."""
    w1 = parameters["fc1.weight"].astype(np.float64)  # (K, H, D)
    b1 = parameters["fc1.bias"].astype(np.float64)  # (K, H)
    w2 = parameters["fc2.weight"][:, 0, :].astype(np.float64)  # (K, H)
    b2 = parameters["fc2.bias"][:, 0].astype(np.float64)  # (K,)
    hidden = np.maximum(np.einsum("nd,khd->knh", np.asarray(x, np.float64), w1) + b1[:, None], 0)
    logits = np.einsum("knh,kh->kn", hidden, w2) + b2[:, None]  # (K, N)
    with np.errstate(over="ignore", invalid="ignore"):
        return 1.0 / (1.0 + np.exp(-logits))

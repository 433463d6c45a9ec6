"""What every engine returns (`TrainingRun`, plain data), and the plumbing they share."""

import time
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class TrainingRun:
    """What training one (hidden_dim, optimizer) for a list of seeds produced; plain data."""

    hidden_dim: int
    optimizer: str
    seeds: list[int]
    learning_rate: float
    epochs: int
    device: str
    engine: str
    loss_curves: np.ndarray  # (K, E) float32: loss of epoch e's forward pass, before its update
    parameters: dict[str, np.ndarray]  # PARAMETER_NAMES -> (K, *NeuralNet shape) float32
    train_seconds: float  # wall seconds for the whole batch of K models


def as_tensors(
    x_train: np.ndarray, y_train: np.ndarray, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the training rows as float32 tensors on `device`: x (N, D) and y (N, 1)."""
    x = torch.as_tensor(np.asarray(x_train, dtype=np.float32), device=device)  # (N, D)
    y = torch.as_tensor(np.asarray(y_train, dtype=np.float32), device=device)
    return x, y.reshape(-1, 1)  # (N, 1)


def clock(device: torch.device) -> float:
    """Return `time.perf_counter()` once the work queued on `device` is done (GPUs run async)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()

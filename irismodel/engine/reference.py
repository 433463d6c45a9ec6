"""The notebook's loop as an engine: autograd, one model at a time (the oracle and the baseline)."""

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from irismodel.engine import stop
from irismodel.engine.run import TrainingRun, as_tensors, clock
from irismodel.model import PARAMETER_NAMES, seeded_net
from irismodel.optimizers import NotebookUpdate, resets_gradients


def train_reference(
    x_train: np.ndarray,
    y_train: np.ndarray,
    hidden_dim: int,
    optimizer: str,
    seeds: Sequence[int],
    learning_rate: float,
    epochs: int,
    device: str = "cpu",
) -> TrainingRun:
    """Train one model per seed with the notebook's loop; stops at `request_stop()`."""
    dev = torch.device(device)
    x, y = as_tensors(x_train, y_train, dev)
    curves, finals = [], []
    start = clock(dev)
    for done, seed in enumerate(seeds):
        net = seeded_net(hidden_dim, seed, x.shape[1]).to(dev)
        criterion = nn.BCEWithLogitsLoss()
        update = NotebookUpdate(optimizer, list(net.parameters()), learning_rate)
        zero_grad = resets_gradients(optimizer)
        curve = []
        for epoch in range(epochs):
            if stop.stop_requested():
                raise stop.counted(stop.interrupted(epoch, epochs), done, len(seeds))
            loss = criterion(net(x), y)
            curve.append(loss.detach())
            if zero_grad:
                net.zero_grad()
            loss.backward()
            update.step()
        curves.append(torch.stack(curve) if curve else torch.empty(0))
        finals.append({name: p.detach().cpu().numpy() for name, p in net.named_parameters()})
    seconds = clock(dev) - start
    return TrainingRun(
        hidden_dim=hidden_dim,
        optimizer=optimizer,
        seeds=list(seeds),
        learning_rate=learning_rate,
        epochs=epochs,
        device=str(dev),
        engine="reference",
        loss_curves=torch.stack(curves).cpu().numpy().reshape(len(seeds), epochs),
        parameters={name: np.stack([f[name] for f in finals]) for name in PARAMETER_NAMES},
        train_seconds=seconds,
    )

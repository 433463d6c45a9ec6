"""Training engines: many seeds of one (hidden_dim, optimizer) at once, and the notebook's loop.

Every loop can be stopped from any thread: `request_stop()` makes each training of the process
raise `TrainingInterrupted` at its next check (between epochs), until `clear_stop()`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from irismodel import native as native_loop
from irismodel.model import PARAMETER_NAMES, initial_parameters, seeded_net
from irismodel.optimizers import (
    ADAM_BETAS,
    ADAM_EPS,
    MOMENTUM,
    FlatUpdate,
    NotebookUpdate,
    check_optimizer,
    resets_gradients,
)

logger = logging.getLogger(__name__)


class TrainingInterrupted(RuntimeError):
    """A training stopped by `request_stop()` before its last epoch; it returns no results."""


def request_stop() -> None:
    """Ask every training of this process to stop: each raises `TrainingInterrupted`.

    Every loop (fused, native, eager, reference), in every thread, checks between epochs, so
    trainings stop within an epoch's time; a training started while the request stands stops
    before its first epoch. Safe from any thread and from a signal handler (it neither blocks
    nor loads anything). The request stays until `clear_stop()`.
    """
    native_loop.request_stop()


def clear_stop() -> None:
    """Withdraw the stop request, so that trainings started from now on run to the end."""
    native_loop.clear_stop()


def stop_requested() -> bool:
    """Whether a stop request is pending."""
    return native_loop.stop_requested()


def _interrupted(epoch: int, epochs: int) -> TrainingInterrupted:
    """The exception of a loop that saw the stop request after `epoch` epochs (as C++ words it)."""
    return TrainingInterrupted(
        f"training interrupted by a stop request after epoch {epoch} of {epochs}"
    )


def _trained(stop: Exception, done: int, models: int) -> TrainingInterrupted:
    """`stop`'s message, completed with how many of the call's models were trained."""
    return TrainingInterrupted(f"{stop} ({done} of {models} models trained)")


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

    def parameters_of(self, index: int) -> dict[str, np.ndarray]:
        """Return the final parameters of the `index`-th seed, shaped as in `NeuralNet`."""
        return {name: values[index] for name, values in self.parameters.items()}


def _as_tensors(
    x_train: np.ndarray, y_train: np.ndarray, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.as_tensor(np.asarray(x_train, dtype=np.float32), device=device)  # (N, D)
    y = torch.as_tensor(np.asarray(y_train, dtype=np.float32), device=device).reshape(
        -1, 1
    )  # (N, 1)
    return x, y


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_batched(
    x_train: np.ndarray,
    y_train: np.ndarray,
    hidden_dim: int,
    optimizer: str,
    seeds: Sequence[int],
    learning_rate: float,
    epochs: int,
    device: str = "cpu",
    *,
    chunk_size: int | None = None,
    loop: str = "auto",
) -> TrainingRun:
    """Train one model per seed, all at once, on stacked weights with a hand-written backward.

    Seed s starts from the weights of `torch.manual_seed(s); NeuralNet(D, hidden_dim, 1)`.
    Full batch, mean BCE-with-logits loss; the update rule is `optimizer`'s, applied to the
    stacked tensors (every rule is elementwise, so each model is updated as if alone).
    Models are independent, so they are trained `chunk_size` at a time, each chunk for all its
    epochs: on CPU a chunk whose buffers stay in cache runs faster per model than one pass over
    thousands of models. `chunk_size=None` picks `default_chunk_size(...)`. On CPU a model's
    loss curve and weights are bit-identical whatever the batch or chunk it is trained in.

    `loop` picks the code that runs the epochs (see `LOOPS`; the engine label in brackets):
    - "fused" ("batched-fused"): the fused CPU kernel of `irismodel.native`, a whole epoch per
      pass over the rows with models in SIMD lanes; equal to "eager" to float32 rounding, and
      bit-identical whatever the batch, the thread count or the CPU's instruction set.
      `chunk_size` does not apply: the kernel works on groups of 8 models, spread over
      `torch.get_num_threads()` threads.
    - "native" ("batched-native"): the eager loop's ATen ops from C++, bit-identical to it on CPU.
    - "eager" ("batched"): the same ops from Python.
    - "auto": "fused" on CPU and "native" on other devices when the compiled module loads,
      else "eager".
    The two compiled loops release the GIL. When a compiled loop is wanted ("auto", "fused",
    "native") and the module is not built, it is compiled first, once per machine (about 30 s;
    `irismodel.native.load_or_build`), unless IRISMODEL_NATIVE_BUILD=0. If that build fails or
    is turned off, "auto" trains with "eager" (logged once), and "fused" or "native" raise
    RuntimeError saying why; so does "fused" off the CPU or with more than 16 features.
    Every loop checks the stop request (`request_stop()`) between epochs and raises
    `TrainingInterrupted` when it is set.
    """
    check_optimizer(optimizer)
    # ATen applies torch.set_num_threads to a new thread (a task's worker) only when that thread
    # first asks for the count; until then MKL there runs its own default-size OpenMP team, and
    # two workers oversubscribe the cores (measured: 2 threads slower than 1).
    torch.get_num_threads()
    dev = torch.device(device)
    x, y = _as_tensors(x_train, y_train, dev)
    n, d = x.shape
    k, h = len(seeds), hidden_dim
    chunk = chunk_size if chunk_size is not None else default_chunk_size(h, n, dev)
    if chunk < 1:
        raise ValueError(f"engine: chunk_size must be a positive number of models, got {chunk}")
    loop = _pick_loop(loop, dev, d)
    if loop == "fused":
        return _train_fused(x, y, hidden_dim, optimizer, seeds, learning_rate, epochs)
    epoch_loop = _native_module(loop).train_epochs if loop == "native" else None
    stacked = {name: t.to(dev) for name, t in _initial_stack(h, seeds, d).items()}

    curves, finals = [], []
    _synchronize(dev)
    start = time.perf_counter()
    with torch.inference_mode():
        # (D+1, N): the data transposed, with a row of ones so that fc1's bias rides in the matmul
        xa_t = torch.cat([x.t(), torch.ones(1, n, device=dev)])
        for lo in range(0, k, chunk):
            part = {name: t[lo : lo + chunk] for name, t in stacked.items()}
            try:
                chunk_curves, chunk_params = _train_chunk(
                    xa_t, y.reshape(1, 1, n), part, optimizer, learning_rate, epochs, epoch_loop
                )
            except TrainingInterrupted as stop:
                raise _trained(stop, lo, k) from None
            curves.append(chunk_curves)
            finals.append(chunk_params)
        _synchronize(dev)
        seconds = time.perf_counter() - start
        loss_curves = torch.cat(curves).cpu().numpy() if curves else np.empty((0, epochs))
        parameters = {
            name: torch.cat([f[name] for f in finals]).cpu().numpy()
            if finals
            else np.empty((0, *stacked[name].shape[1:]), np.float32)
            for name in PARAMETER_NAMES
        }
    return TrainingRun(
        hidden_dim=h,
        optimizer=optimizer,
        seeds=list(seeds),
        learning_rate=learning_rate,
        epochs=epochs,
        device=str(dev),
        engine=ENGINES[loop],
        loss_curves=loss_curves.astype(np.float32, copy=False),
        parameters=parameters,
        train_seconds=seconds,
    )


LOOPS = ("auto", "fused", "native", "eager")
ENGINES = {"fused": "batched-fused", "native": "batched-native", "eager": "batched"}


def _pick_loop(loop: str, device: torch.device, features: int) -> str:
    """Resolve `loop` ("auto" included) to the loop that will run, or raise if it cannot.

    A compiled loop that is wanted but not built is compiled here first (see `train_batched`).
    """
    if loop not in LOOPS:
        raise ValueError(f"engine: loop must be one of {', '.join(LOOPS)}, got {loop!r}")
    fused_fits = device.type == "cpu" and features <= native_loop.FUSED_MAX_FEATURES
    if loop == "auto":
        if native_loop.load_or_build() is None:  # why: logged once by irismodel.native
            logger.debug("engine: native module unavailable; training with the eager loop")
            return "eager"
        return "fused" if fused_fits else "native"
    if loop == "fused" and not fused_fits:
        raise RuntimeError(
            f"engine: loop='fused' runs on the CPU with at most "
            f"{native_loop.FUSED_MAX_FEATURES} features, not on {device.type!r} with {features}; "
            "use loop='auto'"
        )
    if loop != "eager":
        _native_module(loop)  # builds it now, or raises if it cannot be had
    return loop


def _native_module(loop: str) -> ModuleType:
    """Return the compiled module, building it first if needed, or raise RuntimeError saying why."""
    module = native_loop.load_or_build()
    if module is None:
        raise RuntimeError(
            f"engine: loop={loop!r} needs the native module, which is "
            f"{native_loop.unavailable_reason()}; {native_loop.how_to_fix()}; "
            "or pass loop='auto' to fall back to the eager Python loop"
        )
    return module


def _initial_stack(hidden_dim: int, seeds: Sequence[int], d: int) -> dict[str, torch.Tensor]:
    """Each seed's initial weights, stacked: PARAMETER_NAMES -> (K, *NeuralNet shape) on CPU."""
    inits = [initial_parameters(hidden_dim, s, d) for s in seeds]
    if not inits:  # no seeds: empty stacks of the right shapes
        shapes = {name: t.shape for name, t in initial_parameters(hidden_dim, 0, d).items()}
        return {name: torch.empty(0, *shape) for name, shape in shapes.items()}
    return {name: torch.stack([p[name] for p in inits]) for name in PARAMETER_NAMES}


def _train_fused(
    x: torch.Tensor,
    y: torch.Tensor,
    hidden_dim: int,
    optimizer: str,
    seeds: Sequence[int],
    learning_rate: float,
    epochs: int,
) -> TrainingRun:
    """`train_batched` with the fused CPU kernel: one call trains every seed."""
    parameters = _initial_stack(hidden_dim, seeds, x.shape[1])
    curves = torch.empty(len(seeds), epochs)
    beta1, beta2 = ADAM_BETAS
    start = time.perf_counter()
    module = _native_module("fused")
    try:
        module.train_fused(
            x.contiguous(),
            y.reshape(-1).contiguous(),
            *(parameters[name] for name in PARAMETER_NAMES),  # updated in place
            curves,
            optimizer,
            learning_rate,
            epochs,
            MOMENTUM,
            beta1,
            beta2,
            ADAM_EPS,
        )
    except module.TrainingStopped as stop:  # its message says how far training went
        raise TrainingInterrupted(str(stop)) from None
    seconds = time.perf_counter() - start
    return TrainingRun(
        hidden_dim=hidden_dim,
        optimizer=optimizer,
        seeds=list(seeds),
        learning_rate=learning_rate,
        epochs=epochs,
        device="cpu",
        engine=ENGINES["fused"],
        loss_curves=curves.numpy(),
        parameters={name: t.numpy() for name, t in parameters.items()},
        train_seconds=seconds,
    )


# Bytes of buffers one CPU chunk may take. Measured here (AMD EPYC, 1 MiB L2, 32 MiB L3, h=10,
# N=112, 1 thread): chunks of 128-512 models run 1.3-1.5x faster per model-epoch than 1,400 at
# once, and 32 at once is slower again (dispatch overhead); 8 MiB gives ~500 models.
_CPU_CHUNK_BYTES = 8 << 20
_LOSS_BLOCK = 16  # epochs of logits kept before their losses are computed in one pass
_SIMD_BLOCK = 64  # floats; a multiple of ATen's widest vectorized-loop step (2 x AVX-512)


def default_chunk_size(hidden_dim: int, n_rows: int, device: torch.device | str = "cpu") -> int:
    """Return how many models `train_batched` trains together on `device` by default.

    On CPU: as many as keep one chunk's working set (hidden activations, their gradient and the
    buffered logits, all float32) within a share of the last-level cache, at least 16. On GPU:
    all of them (up to 65,536), since launch overhead, not cache, is what a GPU step costs.
    """
    if torch.device(device).type != "cpu":
        return 65_536
    per_model = 4 * n_rows * (2 * hidden_dim + _LOSS_BLOCK + 2)
    return max(16, _CPU_CHUNK_BYTES // per_model)


def _train_chunk(
    xa_t: torch.Tensor,
    y: torch.Tensor,
    init: dict[str, torch.Tensor],
    optimizer: str,
    learning_rate: float,
    epochs: int,
    epoch_loop: Callable[..., None] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Train the k models of `init` for `epochs`; return (loss curves (k, E), final parameters).

    The step is a dozen ops on preallocated buffers (`out=` and in-place), because at these
    sizes each op's dispatch costs as much as its arithmetic. `epoch_loop`, when given, is the
    compiled `train_epochs` of `irismodel.native`, which runs the loop below op for op.
    Both loops check the stop request between epochs and raise `TrainingInterrupted`.
    """
    d1, n = xa_t.shape
    d = d1 - 1
    k, h = init["fc1.bias"].shape
    dev = xa_t.device
    sign = 1.0 - 2.0 * y  # (1, 1, N): BCE(z, y) = softplus((1 - 2y) z) for y in {0, 1}

    # One flat tensor holds every parameter, so that an update is one elementwise pass. Its
    # length is padded to whole SIMD blocks: ATen runs an elementwise op's last partial block
    # through scalar code, whose rounding can differ, and that block would hold the last models.
    sizes = (d1 * k * h, k * h, k)
    theta = torch.zeros(-(-sum(sizes) // _SIMD_BLOCK) * _SIMD_BLOCK, device=dev)
    grad = torch.zeros_like(theta)
    w1, w2, b2 = _flat_views(theta, k, h, d1)  # (k*H, D+1), (k, 1, H), (k, 1, 1)
    g_w1, g_w2, g_b2 = _flat_views(grad, k, h, d1)
    # rows of w1 are (model, hidden unit); its last column is fc1's bias
    w1[:, :d].copy_(init["fc1.weight"].reshape(k * h, d))
    w1[:, d].copy_(init["fc1.bias"].reshape(k * h))
    w2.copy_(init["fc2.weight"])
    b2.copy_(init["fc2.bias"].reshape(k, 1, 1))
    update = FlatUpdate(optimizer, theta, learning_rate)

    z1 = torch.empty(k * h, n, device=dev)  # (k*H, N): pre-activations, then activations
    a1 = z1.view(k, h, n)  # (k, H, N)
    dz1 = torch.empty(k, h, n, device=dev)  # (k, H, N)
    # Rows padded by one column, so that elementwise ops cannot merge rows into one flat loop
    # and each model's row meets the same vector/scalar split wherever it sits in the batch.
    probabilities = torch.empty(k, 1, n + 1, device=dev)[..., :n]  # (k, 1, N)
    dz2 = torch.empty(k, 1, n, device=dev)  # (k, 1, N)
    signed = torch.empty(_LOSS_BLOCK, k, 1, n + 1, device=dev)[..., :n]  # (B, k, 1, N)
    logits = torch.empty(_LOSS_BLOCK, k, 1, n, device=dev)  # last epochs' z2, for their losses
    curves = torch.empty(epochs, k, device=dev)  # (E, k)
    g_w1_t = torch.empty(k, d1, h, device=dev)  # (k, D+1, H): fc1's gradient, transposed
    threshold_backward = torch.ops.aten.threshold_backward.grad_input
    xa_bt = xa_t.expand(k, d1, n)  # (k, D+1, N), a view
    w2_column, g_w2_column = w2.view(k, h, 1), g_w2.view(k, h, 1)  # same memory as (k, 1, H)

    if epoch_loop is not None:
        buffers = {
            "xa_t": xa_t,
            "xa_bt": xa_bt,
            "y": y,
            "sign": sign,
            "theta": theta,
            "grad": grad,
            "w1": w1,
            "b2": b2,
            "w2_column": w2_column,
            "g_b2": g_b2,
            "g_w2_column": g_w2_column,
            "g_w1_khd": g_w1.view(k, h, d1),
            "z1": z1,
            "a1": a1,
            "dz1": dz1,
            "probabilities": probabilities,
            "dz2": dz2,
            "signed": signed,
            "logits": logits,
            "curves": curves,
            "g_w1_t": g_w1_t,
        }
        # FlatUpdate's preallocated state, so both loops update through the same buffers
        for name in ("exp_avg", "exp_avg_sq", "denom", "scaled"):
            if hasattr(update, name):
                buffers[name] = getattr(update, name)
        beta1, beta2 = ADAM_BETAS
        stopped = _native_module("native").TrainingStopped
        try:
            epoch_loop(
                buffers,
                optimizer,
                learning_rate,
                epochs,
                _LOSS_BLOCK,
                n,
                MOMENTUM,
                beta1,
                beta2,
                ADAM_EPS,
            )
        except stopped as stop:
            raise TrainingInterrupted(str(stop)) from None
    else:
        for epoch in range(epochs):
            if native_loop.stop_requested():
                raise _interrupted(epoch, epochs)
            slot = epoch % _LOSS_BLOCK
            z2 = logits[slot]  # (k, 1, N)
            torch.mm(w1, xa_t, out=z1)  # (k*H, N)
            z1.relu_()
            # Layer 2 and its weight gradient as multiply-then-reduce, not bmm: MKL's batched
            # matrix-vector products round differently with the model's place (alignment) in the
            # batch; a reduction over H or N runs in the same order for every model.
            torch.mul(a1, w2_column, out=dz1)  # (k, H, N), dz1 used as scratch
            torch.sum(dz1, 1, keepdim=True, out=z2)  # (k, 1, N)
            z2.add_(b2)
            # d(mean BCE)/dz2 as autograd computes it: (sigmoid(z) - y) / N
            torch.sigmoid(z2, out=probabilities)
            torch.sub(probabilities, y, out=dz2).div_(n)
            torch.sum(dz2, 2, keepdim=True, out=g_b2)  # (k, 1, 1)
            torch.mul(a1, dz2, out=dz1)  # (k, H, N), scratch again
            torch.sum(dz1, 2, keepdim=True, out=g_w2_column)  # (k, H, 1)
            torch.mul(w2_column, dz2, out=dz1)  # (k, H, N)
            threshold_backward(dz1, a1, 0, grad_input=dz1)  # ReLU's backward, in place
            # One small matmul per model, (D+1, N) @ (N, H): MKL's single big matmul picks its
            # kernel (and so its rounding) by the number of models, which would make a model's
            # result depend on its batch. This orientation is ~6x faster than (H, N) @ (N, D+1).
            torch.bmm(xa_bt, dz1.transpose(1, 2), out=g_w1_t)  # (k, D+1, H)
            g_w1.view(k, h, d1).copy_(g_w1_t.transpose(1, 2))
            update.step(grad)
            if slot == _LOSS_BLOCK - 1 or epoch == epochs - 1:
                first = epoch - slot
                block = torch.mul(logits[: slot + 1], sign, out=signed[: slot + 1])  # (b, k, 1, N)
                curves[first : epoch + 1] = F.softplus(block).mean(3).squeeze(2)

    final = {
        "fc1.weight": w1[:, :d].reshape(k, h, d).clone(),
        "fc1.bias": w1[:, d].reshape(k, h).clone(),
        "fc2.weight": w2.clone(),
        "fc2.bias": b2.reshape(k, 1).clone(),
    }
    return curves.t(), final


def _flat_views(flat: torch.Tensor, k: int, h: int, d1: int) -> list[torch.Tensor]:
    """Split a flat (>= k*(H*(D+1) + H + 1),) tensor into (k*H, D+1), (k, 1, H), (k, 1, 1) views."""
    sizes = (k * h * d1, k * h, k)
    shapes = ((k * h, d1), (k, 1, h), (k, 1, 1))
    parts = flat[: sum(sizes)].split(sizes)  # anything after is SIMD padding
    return [part.view(shape) for part, shape in zip(parts, shapes, strict=True)]


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
    """Train one model per seed with the notebook's loop: autograd, one model at a time.

    The oracle for the batched engine and the baseline for benchmarks. Checks the stop request
    (`request_stop()`) between epochs and raises `TrainingInterrupted` when it is set.
    """
    dev = torch.device(device)
    x, y = _as_tensors(x_train, y_train, dev)
    curves, finals = [], []
    _synchronize(dev)
    start = time.perf_counter()
    for done, seed in enumerate(seeds):
        net = seeded_net(hidden_dim, seed, x.shape[1]).to(dev)
        criterion = nn.BCEWithLogitsLoss()
        update = NotebookUpdate(optimizer, list(net.parameters()), learning_rate)
        zero_grad = resets_gradients(optimizer)
        curve = []
        for epoch in range(epochs):
            if native_loop.stop_requested():
                raise _trained(_interrupted(epoch, epochs), done, len(seeds))
            loss = criterion(net(x), y)
            curve.append(loss.detach())
            if zero_grad:
                net.zero_grad()
            loss.backward()
            update.step()
        curves.append(torch.stack(curve) if curve else torch.empty(0))
        finals.append({name: p.detach().cpu().numpy() for name, p in net.named_parameters()})
    _synchronize(dev)
    seconds = time.perf_counter() - start
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

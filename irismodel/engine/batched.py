"""The batched engine: many seeds of one (hidden_dim, optimizer) at once, by the loop that fits."""

from collections.abc import Sequence
from types import ModuleType

import numpy as np
import torch

from irismodel import native
from irismodel.engine import stop
from irismodel.engine.eager import LOSS_BLOCK, RULE_CONSTANTS, train_chunks
from irismodel.engine.run import TrainingRun, as_tensors, clock
from irismodel.initial import initial_weights
from irismodel.model import PARAMETER_NAMES
from irismodel.native import build
from irismodel.optimizers import check_optimizer

LOOPS = ("auto", "fused", "native", "eager")
ENGINES = {"fused": "batched-fused", "native": "batched-native", "eager": "batched"}
# Bytes of buffers one CPU chunk may take: measured (h=10, N=112, 1 thread), 128-512 models run
# 1.3-1.5x faster per model-epoch than 1,400 at once, 32 slower again; 8 MiB gives ~500 models.
_CPU_CHUNK_BYTES = 8 << 20


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

    Seed s starts from `torch.manual_seed(s); NeuralNet(D, hidden_dim, 1)`; each model is updated
    as if alone, on CPU bit-identically whatever its batch or chunk (`chunk_size` models at a time;
    None: `default_chunk_size`). `loop` (engine label in brackets): "fused" ("batched-fused", the
    fused CPU kernel, equal to "eager" to float32 rounding, at most 16 features); "native"
    ("batched-native", the eager ops from C++, same bits); "eager" ("batched", Python); "auto":
    "fused" on CPU, else "native", else "eager" (logged once). A compiled loop not built is
    compiled first (about 30 s) unless IRISMODEL_NATIVE_BUILD=0; a wanted one that cannot be had
    raises RuntimeError. Raises `TrainingInterrupted` at a stop request (`request_stop()`).
    """
    check_optimizer(optimizer)
    # ATen applies torch.set_num_threads to a new thread (a task's worker) only when that thread
    # first asks for the count; until then MKL there runs its own default-size OpenMP team, and
    # two workers oversubscribe the cores (measured: 2 threads slower than 1).
    threads = torch.get_num_threads()
    dev = torch.device(device)
    x, y = as_tensors(x_train, y_train, dev)
    n, d = x.shape
    chunk = chunk_size if chunk_size is not None else default_chunk_size(hidden_dim, n, dev)
    if chunk < 1:
        raise ValueError(f"engine: chunk_size must be a positive number of models, got {chunk}")
    loop, module = _pick_loop(loop, dev, d)
    initial = initial_weights(hidden_dim, seeds, d, threads=threads)  # (K, *NeuralNet shape)
    stacked = {name: t.to(dev) for name, t in initial.items()}
    start = clock(dev)
    if loop == "fused":
        curves = torch.empty(len(stacked["fc1.bias"]), epochs)  # (K, E)
        rows = (x.contiguous(), y.reshape(-1).contiguous())  # (N, D), (N,)
        tensors = (*rows, *(stacked[name] for name in PARAMETER_NAMES), curves)
        with stop.compiled_stops(module):  # its message says how far training went
            module.train_fused(*tensors, optimizer, learning_rate, epochs, *RULE_CONSTANTS)
        parameters = stacked
    else:  # the native loop, or the eager one (module None)
        args = (stacked, chunk, optimizer, learning_rate, epochs)
        curves, parameters = train_chunks(module, x, y, *args)
    seconds = clock(dev) - start
    return TrainingRun(
        hidden_dim=hidden_dim,
        optimizer=optimizer,
        seeds=list(seeds),
        learning_rate=learning_rate,
        epochs=epochs,
        device=str(dev),
        engine=ENGINES[loop],
        loss_curves=curves.cpu().numpy(),
        parameters={name: parameters[name].cpu().numpy() for name in PARAMETER_NAMES},
        train_seconds=seconds,
    )


def default_chunk_size(hidden_dim: int, n_rows: int, device: torch.device | str = "cpu") -> int:
    """Return how many models `train_batched` trains at once: CPU: cache-sized; GPU: 65,536."""
    if torch.device(device).type != "cpu":
        return 65_536
    per_model = 4 * n_rows * (2 * hidden_dim + LOSS_BLOCK + 2)
    return max(16, _CPU_CHUNK_BYTES // per_model)


def _pick_loop(loop: str, device: torch.device, features: int) -> tuple[str, ModuleType | None]:
    """Resolve `loop` to (the loop that runs, its compiled module or None), building it first."""
    if loop not in LOOPS:
        raise ValueError(f"engine: loop must be one of {', '.join(LOOPS)}, got {loop!r}")
    fused_fits = device.type == "cpu" and features <= native.FUSED_MAX_FEATURES
    if loop == "fused" and not fused_fits:
        raise RuntimeError(
            f"engine: loop='fused' runs on the CPU with at most {native.FUSED_MAX_FEATURES} "
            f"features, not on {device.type!r} with {features}; use loop='auto'"
        )
    module = None if loop == "eager" else build.load_or_build()
    if module is None and loop in ("auto", "eager"):
        return "eager", None
    if module is None:
        raise RuntimeError(
            f"engine: loop={loop!r} needs the native module, which is "
            f"{build.unavailable_reason()}; {build.how_to_fix()}; "
            "or pass loop='auto' to fall back to the eager Python loop"
        )
    if loop == "auto":
        loop = "fused" if fused_fits else "native"
    return loop, stop.attach(module)

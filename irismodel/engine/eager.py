"""The eager loop, chunks of models trained by a dozen torch ops an epoch, and its C++ twin."""

from types import ModuleType

import torch
import torch.nn.functional as F

from irismodel.engine import stop
from irismodel.model import PARAMETER_NAMES
from irismodel.optimizers import ADAM_BETAS, ADAM_EPS, MOMENTUM, FlatUpdate

RULE_CONSTANTS = (MOMENTUM, *ADAM_BETAS, ADAM_EPS)  # as the compiled loops take them
LOSS_BLOCK = 16  # epochs of logits kept before their losses are computed in one pass
_SIMD_BLOCK = 64  # floats; a multiple of ATen's widest vectorized-loop step (2 x AVX-512)
# the eager loop's buffers, by the names that train_loop.cpp takes them under
_NATIVE_BUFFERS = """xa_t xa_bt y sign theta grad w1 b2 w2_column g_b2 g_w2_column g_w1_khd z1 a1
    dz1 probabilities dz2 signed logits curves g_w1_t"""
_UPDATE_STATE = ("exp_avg", "exp_avg_sq", "denom", "scaled")  # FlatUpdate's, where it has them


def train_chunks(
    module: ModuleType | None,
    x: torch.Tensor,
    y: torch.Tensor,
    stacked: dict[str, torch.Tensor],
    chunk: int,
    optimizer: str,
    learning_rate: float,
    epochs: int,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Train `stacked`, `chunk` models at a time (by `module` if given); return (curves, finals)."""
    k, n = len(stacked["fc1.bias"]), len(x)
    if k == 0:
        return torch.empty(0, epochs), stacked
    rule, trained = (optimizer, learning_rate, epochs, module), []
    with torch.inference_mode():
        # (D+1, N): the data transposed, with a row of ones so that fc1's bias rides in the matmul
        xa_t = torch.cat([x.t(), torch.ones(1, n, device=x.device)])
        for lo in range(0, k, chunk):
            part = {name: t[lo : lo + chunk] for name, t in stacked.items()}
            try:
                trained.append(_train_chunk(xa_t, y.reshape(1, 1, n), part, *rule))
            except stop.TrainingInterrupted as stopped:
                raise stop.counted(stopped, lo, k) from None
        curves, finals = zip(*trained, strict=True)
        parameters = {name: torch.cat([f[name] for f in finals]) for name in PARAMETER_NAMES}
        return torch.cat(curves), parameters


def _train_chunk(
    xa_t: torch.Tensor,
    y: torch.Tensor,
    init: dict[str, torch.Tensor],
    optimizer: str,
    learning_rate: float,
    epochs: int,
    module: ModuleType | None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Train the k models of `init` for `epochs`; return (loss curves (k, E), final parameters)."""
    # A dozen ops on preallocated buffers: at these sizes an op's dispatch costs its arithmetic.
    d1, n = xa_t.shape
    d = d1 - 1
    k, h = init["fc1.bias"].shape
    dev = xa_t.device
    sign = 1.0 - 2.0 * y  # (1, 1, N): BCE(z, y) = softplus((1 - 2y) z) for y in {0, 1}

    # One flat tensor holds every parameter, so that an update is one elementwise pass. Its
    # length is padded to whole SIMD blocks: ATen runs an elementwise op's last partial block
    # through scalar code, whose rounding can differ, and that block would hold the last models.
    size = d1 * k * h + k * h + k
    theta = torch.zeros(-(-size // _SIMD_BLOCK) * _SIMD_BLOCK, device=dev)
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
    signed = torch.empty(LOSS_BLOCK, k, 1, n + 1, device=dev)[..., :n]  # (B, k, 1, N)
    logits = torch.empty(LOSS_BLOCK, k, 1, n, device=dev)  # last epochs' z2, for their losses
    curves = torch.empty(epochs, k, device=dev)  # (E, k)
    g_w1_t = torch.empty(k, d1, h, device=dev)  # (k, D+1, H): fc1's gradient, transposed
    g_w1_khd = g_w1.view(k, h, d1)  # (k, H, D+1)
    threshold_backward = torch.ops.aten.threshold_backward.grad_input
    xa_bt = xa_t.expand(k, d1, n)  # (k, D+1, N), a view
    w2_column, g_w2_column = w2.view(k, h, 1), g_w2.view(k, h, 1)  # same memory as (k, 1, H)

    if module is not None:  # the loop below, op for op, in C++ on these very buffers
        scope = locals()  # train_loop.cpp takes its buffers by these names
        buffers = {name: scope[name] for name in _NATIVE_BUFFERS.split()}
        buffers |= {name: getattr(update, name) for name in _UPDATE_STATE if hasattr(update, name)}
        with stop.compiled_stops(module):
            module.train_epochs(
                buffers, optimizer, learning_rate, epochs, LOSS_BLOCK, n, *RULE_CONSTANTS
            )
    else:
        for epoch in range(epochs):
            if stop.stop_requested():
                raise stop.interrupted(epoch, epochs)
            slot = epoch % LOSS_BLOCK
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
            g_w1_khd.copy_(g_w1_t.transpose(1, 2))
            update.step(grad)
            if slot == LOSS_BLOCK - 1 or epoch == epochs - 1:
                first = epoch - slot
                block = torch.mul(logits[: slot + 1], sign, out=signed[: slot + 1])  # (b, k, 1, N)
                curves[first : epoch + 1] = F.softplus(block).mean(3).squeeze(2)

    final = (w1[:, :d].reshape(k, h, d), w1[:, d].reshape(k, h), w2, b2.reshape(k, 1))
    return curves.t(), {name: t.clone() for name, t in zip(PARAMETER_NAMES, final, strict=True)}


def _flat_views(flat: torch.Tensor, k: int, h: int, d1: int) -> list[torch.Tensor]:
    """Split a flat (>= k*(H*(D+1) + H + 1),) tensor into (k*H, D+1), (k, 1, H), (k, 1, 1) views."""
    sizes = (k * h * d1, k * h, k)
    shapes = ((k * h, d1), (k, 1, h), (k, 1, 1))
    parts = flat[: sum(sizes)].split(sizes)  # anything after is SIMD padding
    return [part.view(shape) for part, shape in zip(parts, shapes, strict=True)]

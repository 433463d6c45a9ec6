"""The closed registry of update rules a sweep can train with, for both engines."""

from collections.abc import Sequence

import torch

OPTIMIZERS: dict[str, str] = {
    "sgd": "torch.optim.SGD(lr)",
    "manual": (
        "the notebook's fixed hand-written loop, gradients reset every epoch: p -= lr * p.grad "
        "in the reference loop; the batched engine runs it as p.add_(p.grad, alpha=-lr), the "
        "op torch.optim.SGD runs (the same algorithm, one rounding instead of two)"
    ),
    "manual-no-zero-grad": (
        "the notebook's second loop as written: p -= lr * p.grad with gradients never reset, "
        "so they accumulate epoch after epoch"
    ),
    "momentum": "torch.optim.SGD(lr, momentum=0.9)",
    "adam": "torch.optim.Adam(lr)",
}
MOMENTUM = 0.9
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def check_optimizer(name: str) -> str:
    """Return `name` if registered, else raise `ValueError` listing the valid names."""
    if name not in OPTIMIZERS:
        raise ValueError(
            f"optimizers: unknown optimizer {name!r}; valid names are {', '.join(OPTIMIZERS)}"
        )
    return name


def resets_gradients(name: str) -> bool:
    """Whether the rule starts every epoch from fresh gradients (all but the 2nd loop)."""
    return check_optimizer(name) != "manual-no-zero-grad"


class NotebookUpdate:
    """The per-model update of the notebook's loop (reference engine): `torch.optim` or by hand."""

    def __init__(self, name: str, params: Sequence[torch.Tensor], learning_rate: float) -> None:
        self.name = check_optimizer(name)
        self.params = list(params)
        self.learning_rate = lr = learning_rate
        self.optimizer: torch.optim.Optimizer | None = None
        if name in ("sgd", "momentum"):
            momentum = MOMENTUM if name == "momentum" else 0.0
            self.optimizer = torch.optim.SGD(self.params, lr=lr, momentum=momentum)
        elif name == "adam":
            self.optimizer = torch.optim.Adam(self.params, lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS)

    @torch.no_grad()
    def step(self) -> None:
        """Apply one update to every parameter from its `.grad`."""
        if self.optimizer is not None:
            self.optimizer.step()
        else:  # both hand-written loops, as the notebook wrote them: two roundings, not one
            for p in self.params:
                p -= self.learning_rate * p.grad


class FlatUpdate:
    """The same rules applied to one flat tensor holding the parameters of many models.

    Elementwise, so each model's slice updates as if alone; op for op `torch.optim`'s CPU kernels
    without their per-step bookkeeping (dearer than the arithmetic for small batches).
    """

    def __init__(self, name: str, params: torch.Tensor, learning_rate: float) -> None:
        self.name = check_optimizer(name)
        self.params = params
        self.learning_rate = learning_rate
        self.steps = 0
        # momentum's buffer, or manual-no-zero-grad's never-reset .grad
        self.buffer: torch.Tensor | None = None
        if name == "adam":
            self.exp_avg, self.exp_avg_sq = torch.zeros_like(params), torch.zeros_like(params)
            self.denom = torch.empty_like(params)
        elif name == "manual-no-zero-grad":
            self.scaled = torch.empty_like(params)

    @torch.no_grad()
    def step(self, grad: torch.Tensor) -> None:
        """Apply one update from this epoch's gradient `grad` (same shape as the parameters)."""
        lr = self.learning_rate
        self.steps += 1
        if self.name == "sgd" or self.name == "manual":
            # torch.optim.SGD without momentum is exactly this one op, hence sgd == manual.
            self.params.add_(grad, alpha=-lr)
        elif self.name == "momentum":
            if self.buffer is None:
                self.buffer = grad.detach().clone()
            else:
                self.buffer.mul_(MOMENTUM).add_(grad, alpha=1.0)
            self.params.add_(self.buffer, alpha=-lr)
        elif self.name == "adam":
            beta1, beta2 = ADAM_BETAS
            step = float(self.steps)  # torch.optim keeps a float32 step; exact below 2**24
            self.exp_avg.lerp_(grad, 1 - beta1)
            self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            torch.sqrt(self.exp_avg_sq, out=self.denom)
            self.denom.div_((1 - beta2**step) ** 0.5).add_(ADAM_EPS)
            self.params.addcdiv_(self.exp_avg, self.denom, value=-lr / (1 - beta1**step))
        else:  # the notebook's `p -= lr * p.grad`, with autograd's accumulation `.grad += new`
            if self.buffer is None:
                self.buffer = grad.detach().clone()
            else:
                self.buffer.add_(grad)
            torch.mul(self.buffer, lr, out=self.scaled)
            self.params.sub_(self.scaled)

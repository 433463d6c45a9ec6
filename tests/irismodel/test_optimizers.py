"""Tests for the optimizer registry and the flat update rules of the batched engine."""

import pytest
import torch

from irismodel.optimizers import (
    OPTIMIZERS,
    FlatUpdate,
    NotebookUpdate,
    check_optimizer,
    resets_gradients,
)


def test_check_optimizer_rejects_unknown_names_listing_valid_ones():
    """An unknown name raises ValueError naming every registered optimizer."""
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'.*sgd, manual"):
        check_optimizer("rmsprop")
    assert check_optimizer("adam") == "adam"


def test_only_the_notebooks_second_loop_keeps_gradients():
    """resets_gradients is False for manual-no-zero-grad only, and validates the name."""
    assert [n for n in OPTIMIZERS if not resets_gradients(n)] == ["manual-no-zero-grad"]
    with pytest.raises(ValueError, match="valid names are"):
        resets_gradients("nope")


def test_notebook_update_rejects_unknown_names():
    """NotebookUpdate validates its rule name like the registry."""
    with pytest.raises(ValueError, match="unknown optimizer 'sgdd'"):
        NotebookUpdate("sgdd", [torch.zeros(2, requires_grad=True)], 0.1)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_flat_update_is_bit_identical_to_torch_optim_on_separate_tensors(name):
    """FlatUpdate on one flat tensor equals NotebookUpdate on the separate tensors, bit for bit,
    except `manual`: the notebook's literal `p -= lr * p.grad` rounds twice where the batched
    engine's SGD op rounds once, so the two agree to float32 rounding only."""
    generator = torch.Generator().manual_seed(0)
    params = [torch.randn(10, 4, generator=generator), torch.randn(10, generator=generator)]
    flat = torch.cat([p.flatten() for p in params])
    separate = [p.clone().requires_grad_() for p in params]
    reference = NotebookUpdate(name, separate, learning_rate=0.1)
    flat_update = FlatUpdate(name, flat, learning_rate=0.1)
    for _ in range(30):
        grads = [torch.randn(p.shape, generator=generator) for p in params]
        for p, g in zip(separate, grads, strict=True):
            # autograd accumulates into .grad unless it is reset: mirror both cases
            keep = not resets_gradients(name) and p.grad is not None
            p.grad = p.grad + g if keep else g.clone()
        reference.step()
        flat_update.step(torch.cat([g.flatten() for g in grads]))
    notebook = torch.cat([p.detach().flatten() for p in separate])
    if name == "manual":
        assert not torch.equal(notebook, flat)  # the literal line is not SGD's op
        torch.testing.assert_close(notebook, flat, rtol=1e-6, atol=1e-6)
    else:
        assert torch.equal(notebook, flat)

"""Tests for the stacked initial weights: bit for bit those of `manual_seed(s); NeuralNet`."""

import functools
import json
import os
import platform
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from irismodel import native
from irismodel.initial import (
    BACKENDS,
    ROUNDINGS,
    initial_weights,
    resolve_backend,
    seed_array,
    torch_uniform_rounding,
)
from irismodel.model import PARAMETER_NAMES, NeuralNet

REPO = Path(__file__).resolve().parents[2]
# seeds 0..2099 over the sweep's default dims 8..14: seed s at hidden_dim 8 + s % 7
SWEEP_DIMS = range(8, 15)
THOUSANDS = {h: tuple(range(h - 8, 2100, 7)) for h in SWEEP_DIMS}
# torch keeps a seed's low 32 bits: seeds around 2**32 and 2**63, and the ends of the range
# torch.manual_seed accepts (negatives as two's complement)
EDGE_SEEDS = (
    *range(2**32 - 3, 2**32 + 3),
    2**32 + 12345,
    2**33 + 7,
    2**40 + 99,
    2**62,
    *range(2**63 - 3, 2**63 + 2),
    2**64 - 1,
    -1,
    -2,
    -(2**63),
)
# 6H + 1 draws a model: H = 37 and 38 fall either side of the generator's 227 draws from a
# partial state, 103 and 104 either side of its 624-word state, 4096 over many states
DIMS = (*range(1, 65), 103, 104, 300, 4096)
DIM_SEEDS = (0, 7, 2**32 + 3, 2**63 - 1)


@functools.cache
def reference(hidden_dim, seeds, input_dim=4):
    """The parameters of `torch.manual_seed(s); NeuralNet(input_dim, hidden_dim, 1)`, stacked."""
    nets = []
    with torch.random.fork_rng(devices=[]):  # the other tests keep their global generator
        for seed in seeds:
            torch.manual_seed(seed)
            nets.append(dict(NeuralNet(input_dim, hidden_dim, 1).named_parameters()))
    return {name: torch.stack([net[name].detach() for net in nets]) for name in PARAMETER_NAMES}


def assert_stacks_equal(got, want, seeds):
    """Every tensor equal bit for bit; on failure, name the first seed that differs."""
    assert list(got) == list(PARAMETER_NAMES)
    for name in PARAMETER_NAMES:
        assert got[name].shape == want[name].shape, name
        if not torch.equal(got[name], want[name]):
            differs = (got[name] != want[name]).reshape(len(seeds), -1).any(1)
            first = int(differs.nonzero()[0])
            pytest.fail(f"{name} differs for {int(differs.sum())} seeds, first {seeds[first]}")


@pytest.mark.parametrize("hidden_dim", SWEEP_DIMS)
def test_thousands_of_seeds_equal_manual_seed_nets(built, hidden_dim):
    """Seeds 0..2099, spread over hidden_dim 8..14, give the weights of
    `torch.manual_seed(s); NeuralNet(4, h, 1)` bit for bit."""
    seeds = THOUSANDS[hidden_dim]
    got = initial_weights(hidden_dim, seeds, backend="compiled")
    assert_stacks_equal(got, reference(hidden_dim, seeds), seeds)


def test_seeds_past_32_bits_and_negative_equal_manual_seed_nets(built):
    """Seeds near 2**32 and 2**63, up to 2**64 - 1 and down to -2**63, match torch bit for bit,
    and a seed gives the weights of its low 32 bits, as torch's generator does."""
    got = initial_weights(14, EDGE_SEEDS, backend="compiled")
    assert_stacks_equal(got, reference(14, EDGE_SEEDS), EDGE_SEEDS)
    low = initial_weights(14, [seed % 2**32 for seed in EDGE_SEEDS], backend="compiled")
    assert_stacks_equal(got, low, EDGE_SEEDS)


def test_every_hidden_dim_equals_manual_seed_nets(built):
    """Every hidden_dim 1..64, and 103, 104, 300 and 4096, matches torch bit for bit."""
    for hidden_dim in DIMS:
        got = initial_weights(hidden_dim, DIM_SEEDS, backend="compiled")
        assert_stacks_equal(got, reference(hidden_dim, DIM_SEEDS), DIM_SEEDS)


@pytest.mark.parametrize("input_dim", [1, 3, 16])
def test_other_input_dims_equal_manual_seed_nets(built, input_dim):
    """`NeuralNet(d, h, 1)` for d other than 4 matches torch bit for bit too."""
    seeds = tuple(range(20))
    got = initial_weights(6, seeds, input_dim=input_dim, backend="compiled")
    assert_stacks_equal(got, reference(6, seeds, input_dim), seeds)


def test_any_thread_count_gives_the_same_weights(built):
    """The compiled backend on 1, 2, 3 or 16 threads gives the same tensors."""
    seeds = np.arange(20_000, 23_000)  # enough seeds for several threads
    one = initial_weights(14, seeds, threads=1, backend="compiled")
    for threads in (2, 3, 16):
        got = initial_weights(14, seeds, threads=threads, backend="compiled")
        assert_stacks_equal(got, one, seeds)


def test_python_threads_at_once_each_get_their_seeds(built):
    """Calls from several Python threads at once (the GIL released) each get their own seeds:
    what one call at a time gives."""
    starts = (0, 10**6, 2**40, 2**64 - 700)
    seeds = [np.arange(start, start + 700, dtype=np.uint64) for start in starts]
    alone = [initial_weights(11, part, threads=1, backend="compiled") for part in seeds]
    got = [None] * len(seeds)

    def draw(index):
        got[index] = initial_weights(11, seeds[index], threads=2, backend="compiled")

    threads = [threading.Thread(target=draw, args=(i,)) for i in range(len(seeds))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, part in enumerate(seeds):
        assert_stacks_equal(got[index], alone[index], part)


def test_layout_is_the_engines_stack():
    """PARAMETER_NAMES -> (K, H, D), (K, H), (K, 1, H), (K, 1): contiguous float32 CPU tensors
    of their own, for seeds given as a list, tuple, range, iterator or integer array."""
    seeds = [3, 1, 4, 1, 5]
    got = initial_weights(9, seeds, input_dim=2)
    shapes = {
        "fc1.weight": (5, 9, 2),
        "fc1.bias": (5, 9),
        "fc2.weight": (5, 1, 9),
        "fc2.bias": (5, 1),
    }
    assert {name: tuple(t.shape) for name, t in got.items()} == shapes
    for tensor in got.values():
        assert tensor.dtype == torch.float32 and tensor.device.type == "cpu"
        assert tensor.is_contiguous() and tensor.storage_offset() == 0
    assert len({t.untyped_storage().data_ptr() for t in got.values()}) == 4
    assert torch.equal(got["fc1.weight"][1], got["fc1.weight"][3])  # seed 1 twice
    for same in (
        tuple(seeds),
        iter(seeds),
        np.array(seeds, np.int32),
        np.array(seeds, np.uint64),
        np.array([3, 0, 1, 0, 4, 0, 1, 0, 5])[::2],  # not contiguous
    ):
        assert_stacks_equal(initial_weights(9, same, input_dim=2), got, seeds)
    listed = initial_weights(9, [3, 4, 5, 6, 7], input_dim=2)
    assert_stacks_equal(initial_weights(9, range(3, 8), input_dim=2), listed, range(3, 8))


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_no_seeds_give_empty_stacks(backend_name):
    """No seeds: empty stacks of the right shapes, as the engine stacks them."""
    got = initial_weights(7, [], backend=backend_name)
    assert {name: tuple(t.shape) for name, t in got.items()} == {
        "fc1.weight": (0, 7, 4),
        "fc1.bias": (0, 7),
        "fc2.weight": (0, 1, 7),
        "fc2.bias": (0, 1),
    }


def test_auto_takes_the_compiled_backend_once_built(built):
    """With the module built, "auto" draws with the compiled backend, which torch's rounding
    (one of the two known) lets it reproduce; "torch" is the per-seed reference loop."""
    assert torch_uniform_rounding() in ROUNDINGS
    assert resolve_backend("auto") == "compiled"
    seeds = tuple(range(50))
    assert_stacks_equal(initial_weights(10, seeds, backend="torch"), reference(10, seeds), seeds)


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ({"hidden_dim": 0}, r"hidden_dim must be a positive integer, got 0"),
        ({"hidden_dim": True}, r"hidden_dim must be a positive integer, got True"),
        ({"hidden_dim": 2.5}, r"hidden_dim must be a positive integer, got 2\.5"),
        ({"input_dim": -1}, r"input_dim must be a positive integer, got -1"),
        ({"threads": 0}, r"threads must be a positive integer, got 0"),
        ({"backend": "gpu"}, r"backend must be one of auto, compiled, torch, got 'gpu'"),
        ({"seeds": [1, 2.5]}, r"seeds must be integers from -2\*\*63 to 2\*\*64 - 1 .*got 2\.5"),
        ({"seeds": [2**64]}, r"seeds must be integers from .*got 18446744073709551616"),
        ({"seeds": [-(2**63) - 1]}, r"seeds must be integers from .*got -9223372036854775809"),
        ({"seeds": "012"}, r"seeds must be a sequence of integers, got '012'"),
        ({"seeds": np.zeros((2, 2), int)}, r"seeds must be a 1-D array of integers, got a 2-D"),
        ({"seeds": np.array([1.0])}, r"seeds must be a 1-D array of integers, .* of float64"),
    ],
)
def test_bad_arguments_raise_naming_the_parameter(arguments, match):
    """A bad argument raises ValueError naming it and what is allowed."""
    call = {"hidden_dim": 8, "seeds": [0, 1], **arguments}
    with pytest.raises(ValueError, match=match):
        initial_weights(**call)


def test_seed_array_reads_seeds_as_torch_does():
    """Seeds become uint64 as torch.manual_seed reads them: a negative one as its two's
    complement, whatever mix of signs and sizes the list holds."""
    got = seed_array([0, -1, 2**63, -(2**63), 2**64 - 1, 5])
    assert got.dtype == np.uint64
    assert got.tolist() == [0, 2**64 - 1, 2**63, 2**63, 2**64 - 1, 5]
    assert seed_array(np.array([-1, 7], np.int64)).tolist() == [2**64 - 1, 7]


# Run in a fresh process: torch's rounding is fixed at its start by ATEN_CPU_CAPABILITY.
_OTHER_PROCESS = textwrap.dedent(
    """
    import json, os, torch
    from irismodel import initial
    from irismodel.model import NeuralNet, PARAMETER_NAMES

    seeds = [*range(100), 2**32 + 1, 2**63 - 1, -1]

    def matches(hidden_dim, backend):
        got = initial.initial_weights(hidden_dim, seeds, backend=backend)
        for k, seed in enumerate(seeds):
            torch.manual_seed(seed)
            net = dict(NeuralNet(4, hidden_dim, 1).named_parameters())
            if not all(torch.equal(got[n][k], net[n].detach()) for n in PARAMETER_NAMES):
                return False
        return True

    found = {"rounding": initial.torch_uniform_rounding(), "unbuilt": initial.resolve_backend()}
    found["unbuilt-8"] = matches(8, "auto")
    try:
        initial.initial_weights(8, seeds, backend="compiled")
    except RuntimeError as error:
        found["compiled_unbuilt"] = str(error)
    os.environ["IRISMODEL_NATIVE_DIR"] = os.environ["BUILT_DIR"]
    del os.environ["IRISMODEL_NATIVE_BUILD"]
    found["built"] = initial.resolve_backend()
    for hidden_dim in (8, 14, 300):
        found[f"built-{hidden_dim}"] = matches(hidden_dim, "compiled")
    print(json.dumps(found))
    """
)


@pytest.mark.subprocess
def test_torchs_baseline_kernel_and_no_module_are_matched_too(built, tmp_path):
    """Under ATEN_CPU_CAPABILITY=default (no fused multiply-add: values rounded twice) the
    compiled module still matches torch; with no module built "auto" draws seed by seed with
    torch, the same values, and "compiled" with building off raises RuntimeError saying why."""
    env = {
        **os.environ,
        "ATEN_CPU_CAPABILITY": "default",
        "IRISMODEL_NATIVE_DIR": str(tmp_path),
        "IRISMODEL_NATIVE_BUILD": "0",
        "BUILT_DIR": str(native.cache_root()),
    }
    done = subprocess.run(
        [sys.executable, "-c", _OTHER_PROCESS],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    if platform.machine() in ("x86_64", "AMD64"):  # the baseline x86-64 has no FMA
        assert found["rounding"] == "separate"
    assert found["rounding"] in ROUNDINGS
    assert (found["unbuilt"], found["built"]) == ("torch", "compiled")
    unbuilt = "backend='compiled' needs the compiled module, not built"
    assert unbuilt in found["compiled_unbuilt"]
    assert not list(tmp_path.iterdir())  # nothing was built there
    checks = {key: value for key, value in found.items() if key[-1].isdigit()}
    assert checks == {"unbuilt-8": True, "built-8": True, "built-14": True, "built-300": True}

"""Benchmark: the initial weights of 20,000 seeds, per-seed Python loop against initial_weights."""

import argparse
import functools
import json
import os
import platform
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from irismodel.initial import initial_weights, torch_uniform_rounding
from irismodel.model import PARAMETER_NAMES, initial_parameters
from irismodel.native import build

SEEDS = 20_000
HIDDEN_DIMS = [8, 14]
THREADS = [1, 2]
# best of this many timed calls (after one untimed): the per-seed loop takes seconds a call
REPEATS = {"loop": 3, "compiled": 20}


def per_seed_loop(hidden_dim: int, seeds: list[int], threads: int) -> dict[str, torch.Tensor]:
    """The engine's stack before initial_weights: one seeded init per seed, then torch.stack."""
    inits = [initial_parameters(hidden_dim, s) for s in seeds]
    return {name: torch.stack([p[name] for p in inits]) for name in PARAMETER_NAMES}


def with_backend(backend: str) -> Callable[[int, list[int], int], dict[str, torch.Tensor]]:
    def draw(hidden_dim: int, seeds: list[int], threads: int) -> dict[str, torch.Tensor]:
        return initial_weights(hidden_dim, seeds, threads=threads, backend=backend)

    return draw


def best_of(repeats: int, call: Callable[[], object]) -> float:
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def two_python_threads(call: Callable[[], object]) -> float:
    """Wall seconds of `call` run in two Python threads at once (each its own full call)."""
    workers = [threading.Thread(target=call) for _ in range(2)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=SEEDS)
    parser.add_argument("--json", type=Path, default=Path("bench/results/initial.json"))
    args = parser.parse_args()
    build.build()  # the compiled backend is what is measured; a no-op when built
    seeds = list(range(args.seeds))
    methods = {"loop": per_seed_loop, "compiled": with_backend("compiled")}
    rows = []
    print(f"{'method':>9} {'h':>3} {'thr':>3} {'us/model':>9} {'x loop':>7} {'2 py thr':>9} same")
    for hidden_dim in HIDDEN_DIMS:
        expected = per_seed_loop(hidden_dim, seeds, 1)
        loop_us = None
        for threads in THREADS:
            torch.set_num_threads(threads)
            for method, draw in methods.items():
                if method == "loop" and threads > 1:  # one thread whatever the setting
                    continue
                call = functools.partial(draw, hidden_dim, seeds, threads)
                got = call()
                same = all(torch.equal(got[n], expected[n]) for n in PARAMETER_NAMES)
                seconds = best_of(REPEATS[method], call)
                # each Python thread draws all the seeds: 2x the models in this wall time
                both = two_python_threads(call)
                us = seconds / len(seeds) * 1e6
                loop_us = us if method == "loop" else loop_us
                row = {
                    "method": method,
                    "hidden_dim": hidden_dim,
                    "seeds": len(seeds),
                    "threads": threads,
                    "seconds": seconds,
                    "us_per_model": us,
                    "speedup_vs_loop": loop_us / us,
                    "two_python_threads_us_per_model": both / (2 * len(seeds)) * 1e6,
                    "bit_identical_to_loop": same,
                }
                rows.append(row)
                print(
                    f"{method:>9} {hidden_dim:>3} {threads:>3} {us:>9.3f} "
                    f"{row['speedup_vs_loop']:>6.0f}x "
                    f"{row['two_python_threads_us_per_model']:>9.3f} {same}",
                    flush=True,
                )
    print(
        f"best of {REPEATS} calls of {len(seeds):,} seeds; thr: threads of the compiled "
        "backend (the loop uses one); 2 py thr: us a model when two Python threads "
        "each draw all the seeds at once (the loop holds the GIL, the others release it)"
    )
    result = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "uniform_rounding": torch_uniform_rounding(),
            "load_average_1_5_15_min": os.getloadavg(),  # other work on the machine meanwhile
        },
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

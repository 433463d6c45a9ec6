"""Benchmark: what a sweep costs per model outside training, step by step, library and flow.

Sweeps of hidden_dim 8..14 x sgd, manual-no-zero-grad x N seeds on one split (10k and 100k
models) at 10 and 1000 epochs, on 1 and 2 threads, each in a fresh process after a small
warm-up sweep there:

- library: `irismodel.sweep.run_sweep` under `torch.set_num_threads(threads)` (shards one after
  the other, each trained on `threads` threads);
- flow: the iris-sweep flow against a Prefect server started here, on a thread pool of
  `threads` shard tasks (each task trains on one torch thread), without its report.

Each step's seconds come from timers around the library functions that do it (summed over the
threads that ran them; a reference check's own training counts as the check): initial weights,
training, evaluation (predictions, metrics, outcomes), reference check, rows (the Arrow table
and its metadata), write (the Parquet part, written and synced). "other" is what the wall time,
times the threads that ran shards, leaves: opening and publishing the run, splits, Prefect's
task runs and API calls, and threads waiting for work. "server" is apart: the CPU seconds the
Prefect server (a process beside the flow, on the same cores) spent during the flow's sweep, per
model. The engine's own rate (`train_batched`
alone, one call per configuration) is measured on the same threads, for the ratios the
pipeline is judged by, printed at the end:

- one thread, 20k models: the 10-epoch library sweep's wall time over the 1000-epoch one's;
- 100k models at 10 epochs through the flow: seconds;
- 1 -> 2 threads at 100k models: the speed-up of the whole pipeline (flow);
- 1000 epochs at 100k models: the pipeline's model-epochs per second over the engine's; and the
  same had the server's CPU seconds been spent on other cores (the wall time less the server's
  seconds over the threads: an estimate, as for a server on another machine; measured instead
  with `--server-cores`, on a machine with cores to spare).

    python bench/overhead.py              # the full grid (10k, 20k, 100k models): a quiet machine
    python bench/overhead.py --quick      # 1k, 2k and 5k models: that it works (~7 min on 2 cores)
    python bench/overhead.py --threads 1 2 4 8 16   # on a big machine, unattended: each step's
                                                    # cost per model as the threads grow
    python bench/overhead.py --server-cores 2       # the server on the last 2 cores, every
                                                    # sweep on the others: the "elsewhere" ratio
                                                    # measured rather than estimated
"""

import argparse
import functools
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HIDDEN_DIMS, OPTIMIZERS = "8..14", ["sgd", "manual-no-zero-grad"]
CONFIGURATIONS = 7 * len(OPTIMIZERS)  # models = seeds x this
FULL = {"sizes": {"10k": 715, "20k": 1429, "100k": 7143}, "epochs": [10, 1000], "threads": [1, 2]}
QUICK = {"sizes": {"1k": 72, "2k": 143, "5k": 358}, "epochs": [10, 200], "threads": [1, 2]}
ENGINE_SEEDS = {"full": 1000, "quick": 200}  # seeds per configuration of the engine's own rate
# Each step: the library functions whose time is the step's, as (module, attribute) where
# callers look them up at call time. Time inside a reference check is the check's.
STEPS: dict[str, list[tuple[str, str]]] = {
    "initial weights": [("irismodel.engine.batched", "initial_weights")],
    "training": [("irismodel.sweep", "train_batched")],
    "evaluation": [
        ("irismodel.sweep", "predict_proba"),
        ("irismodel.sweep", "binary_metrics"),
        ("irismodel.sweep", "classify"),
    ],
    "reference check": [("irismodel.sweep", "check_against_reference")],
    "rows": [("irismodel.sweep", "shard_table"), ("irismodel.sweep", "part_metadata")],
    "write": [("irismodel.sweep", "write_parquet"), ("irismodel.store.writer", "write_file")],
}
CHECK = "reference check"


class StepTimers:
    """Seconds per step, exclusive of the steps called inside it, summed over threads."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.unmeasured: list[str] = []
        self._local = threading.local()
        self._lock = threading.Lock()

    def install(self) -> None:
        for step, places in STEPS.items():
            for module_name, attribute in places:
                module = importlib.import_module(module_name)
                function = getattr(module, attribute, None)
                if function is None:  # renamed since: say so rather than measure nothing
                    self.unmeasured.append(f"{module_name}.{attribute}")
                    continue
                setattr(module, attribute, self._timed(step, function))

    def _timed(self, step: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            stack = self._local.__dict__.setdefault("stack", [])  # [step, inner seconds]
            if any(frame[0] == CHECK for frame in stack):
                return function(*args, **kwargs)
            stack.append([step, 0.0])
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                _, inner = stack.pop()
                if stack:
                    stack[-1][1] += elapsed
                with self._lock:
                    self.seconds[step] += elapsed - inner

        return timed


def process_tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of process `pid` and every process below it, from /proc."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue  # it ended meanwhile
    return total


def _server_pid() -> int:
    """The pid of this process's one child still running: the temporary Prefect server."""
    tasks = Path("/proc/self/task").iterdir()
    children = [int(c) for task in tasks for c in (task / "children").read_text().split()]
    if len(children) != 1:
        raise RuntimeError(f"expected the server as the one child process, found {children}")
    return children[0]


def pin_server(server: int, cores: int) -> tuple[list[int], list[int]]:
    """Pin the server's processes to the last `cores` cores and this process to the others.

    Every thread of the server's process tree is pinned (threads it starts later inherit it);
    the sweeps, started from this process afterwards, inherit the rest. Returns both sets.
    """
    available = sorted(os.sched_getaffinity(0))
    if not 0 < cores < len(available):
        raise SystemExit(f"--server-cores: {cores} leaves no core for the sweeps of {available}")
    mine, theirs = available[:-cores], available[-cores:]
    pending = [server]
    while pending:
        current = pending.pop()
        for task in Path(f"/proc/{current}/task").iterdir():
            os.sched_setaffinity(int(task.name), theirs)
            pending += [int(c) for c in (task / "children").read_text().split()]
    os.sched_setaffinity(0, mine)
    return mine, theirs


def _config(seeds: int, epochs: int, out: str) -> dict[str, Any]:
    return {
        "hidden_dims": HIDDEN_DIMS,
        "optimizers": OPTIMIZERS,
        "seeds": f"0..{seeds - 1}",
        "split_seeds": "0",
        "epochs": epochs,
        "output_dir": out,
        "device": "cpu",
        "report": False,
    }


def measure_one(path: str, seeds: int, epochs: int, threads: int) -> dict[str, Any]:
    """Run one sweep in this process (warm-up first); return its wall time and steps."""
    import torch

    torch.set_num_threads(threads)
    timers = StepTimers()
    with tempfile.TemporaryDirectory(prefix="iris-sweep-overhead-") as out:
        if path == "library":
            from irismodel.parameters import SweepConfig
            from irismodel.sweep import run_sweep

            def sweep(parameters: dict[str, Any]) -> None:
                run_sweep(SweepConfig(**parameters))
        else:
            from prefect.task_runners import ThreadPoolTaskRunner

            from flows.iris_sweep import iris_sweep

            runner = ThreadPoolTaskRunner(max_workers=threads)
            flow = iris_sweep.with_options(task_runner=runner)

            def sweep(parameters: dict[str, Any]) -> None:
                flow(**parameters)

        warm_up = {**_config(2, 2, f"{out}/warm-up"), "hidden_dims": "8", "optimizers": ["sgd"]}
        sweep(warm_up)
        server = int(os.environ.get("IRIS_SWEEP_BENCH_SERVER_PID", "0"))
        timers.install()
        server_before = process_tree_cpu_seconds(server) if server else 0.0
        start = time.perf_counter()
        sweep(_config(seeds, epochs, f"{out}/sweep"))
        wall = time.perf_counter() - start
        server_cpu = process_tree_cpu_seconds(server) - server_before if server else 0.0
    models = seeds * CONFIGURATIONS
    steps = {step: timers.seconds.get(step, 0.0) for step in STEPS}
    parallel = threads if path == "flow" else 1  # Python threads that ran shards
    steps["other"] = wall * parallel - sum(steps.values())
    return {
        "path": path,
        "models": models,
        "epochs": epochs,
        "threads": threads,
        "wall_s": wall,
        "us_per_model": wall / models * 1e6,
        "model_epochs_per_s": models * epochs / wall,
        "step_seconds": steps,
        "step_us_per_model": {step: s / models * 1e6 for step, s in steps.items()},
        "server_cpu_s": server_cpu,
        "server_us_per_model": server_cpu / models * 1e6,
        "unmeasured": timers.unmeasured,
    }


def measure_engine(seeds: int, epochs: int, threads: int) -> dict[str, Any]:
    """The engine alone: `train_batched` once per configuration, `seeds` seeds each."""
    import torch

    from irismodel.data import load_dataset, split_dataset
    from irismodel.engine import train_batched

    torch.set_num_threads(threads)
    split = split_dataset(load_dataset())
    train_batched(split.x_train, split.y_train, 8, "sgd", list(range(50)), 0.1, 20)  # warm-up
    start = time.perf_counter()
    for hidden_dim in range(8, 15):
        for optimizer in OPTIMIZERS:
            train_batched(
                split.x_train, split.y_train, hidden_dim, optimizer, list(range(seeds)), 0.1, epochs
            )
    wall = time.perf_counter() - start
    models = seeds * CONFIGURATIONS
    return {
        "path": "engine",
        "models": models,
        "epochs": epochs,
        "threads": threads,
        "wall_s": wall,
        "model_epochs_per_s": models * epochs / wall,
    }


def _child(arguments: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run this script with `arguments` in a fresh process; return the JSON it prints last."""
    done = subprocess.run(
        [sys.executable, __file__, "--one", *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(arguments)} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _find(rows: list[dict[str, Any]], **keys: Any) -> dict[str, Any] | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in keys.items())), None)


def ratios(rows: list[dict[str, Any]], grid: dict[str, Any]) -> dict[str, Any]:
    """The figures the pipeline is judged by, from the rows measured (None where not run)."""
    sizes = grid["sizes"]
    middle, large = (seeds * CONFIGURATIONS for seeds in list(sizes.values())[-2:])
    low, high = min(grid["epochs"]), max(grid["epochs"])

    def wall(**keys: Any) -> float | None:
        row = _find(rows, **keys)
        return row["wall_s"] if row else None

    def divide(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    short, long = (wall(path="library", models=middle, epochs=e, threads=1) for e in (low, high))
    flow_rate = _find(rows, path="flow", models=large, epochs=high, threads=max(grid["threads"]))
    engine = _find(rows, path="engine", epochs=high, threads=max(grid["threads"]))
    return {
        f"library_1_thread_{middle}_models_{low}_over_{high}_epochs": divide(short, long),
        f"flow_{large}_models_{low}_epochs_seconds_by_threads": {
            t: wall(path="flow", models=large, epochs=low, threads=t) for t in grid["threads"]
        },
        f"flow_{large}_models_speedup_1_to_2_threads_by_epochs": {
            e: divide(*(wall(path="flow", models=large, epochs=e, threads=t) for t in (1, 2)))
            for e in grid["epochs"]
        },
        f"flow_{large}_models_{high}_epochs_rate_over_engine": divide(
            flow_rate and flow_rate["model_epochs_per_s"], engine and engine["model_epochs_per_s"]
        ),
        f"flow_{large}_models_{high}_epochs_rate_over_engine_server_elsewhere": divide(
            flow_rate and large * high / _server_elsewhere(flow_rate),
            engine and engine["model_epochs_per_s"],
        ),
    }


def _server_elsewhere(row: dict[str, Any]) -> float:
    """A flow's wall time had the server's CPU seconds been spent on other cores.

    Measured where the server was pinned to cores of its own (`--server-cores`); else an
    estimate: the wall time less the server's CPU seconds over the threads.
    """
    if row.get("server_pinned_elsewhere"):
        return row["wall_s"]
    return row["wall_s"] - row.get("server_cpu_s", 0.0) / row["threads"]


_SHORT = {"initial weights": "init", "reference check": "check", "evaluation": "eval"}


def _header() -> str:
    line = f"{'path':>7} {'models':>7} {'epochs':>6} {'thr':>3} {'wall s':>7} {'us/model':>8} "
    steps = " ".join(f"{_SHORT.get(s, s):>8}" for s in [*STEPS, "other", "server"])
    return line + steps + "  (us a model)"


def _row_line(row: dict[str, Any]) -> str:
    line = f"{row['path']:>7} {row['models']:>7} {row['epochs']:>6} {row['threads']:>3} "
    line += f"{row['wall_s']:>7.2f} {row['wall_s'] / row['models'] * 1e6:>8.1f} "
    if "step_us_per_model" not in row:  # the engine alone
        return line + f"{row['model_epochs_per_s']:,.0f} model-epochs/s"
    line += " ".join(f"{row['step_us_per_model'][s]:>8.1f}" for s in [*STEPS, "other"])
    return line + f" {row['server_us_per_model']:>8.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, to see that it works")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "overhead.json")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        help="thread counts to measure (default 1 2); on a big machine e.g. 1 2 4 8 16",
    )
    parser.add_argument(
        "--server-cores",
        type=int,
        default=0,
        help="pin the Prefect server to this many of the last cores, the sweeps to the others",
    )
    parser.add_argument("--one", nargs=4, help=argparse.SUPPRESS)  # path seeds epochs threads
    args = parser.parse_args()
    if args.one:
        path, seeds, epochs, threads = args.one
        if path == "engine":
            print(json.dumps(measure_engine(int(seeds), int(epochs), int(threads))))
        else:
            print(json.dumps(measure_one(path, int(seeds), int(epochs), int(threads))))
        return 0

    from cli.server import temporary_server

    grid, mode = (QUICK, "quick") if args.quick else (FULL, "full")
    if args.threads:
        grid = {**grid, "threads": sorted(set(args.threads) | {1})}
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    started, load_before = time.strftime("%Y-%m-%dT%H:%M:%S"), os.getloadavg()
    rows: list[dict[str, Any]] = []
    jobs = [("engine", ENGINE_SEEDS[mode], e, t) for e in grid["epochs"] for t in grid["threads"]]
    sizes = list(grid["sizes"].items())
    for name, seeds in sizes:
        for path in ("library", "flow"):
            if name == sizes[-2][0] and path == "flow":
                continue  # the middle size is there for the library's epoch ratio only
            for epochs in grid["epochs"]:
                for threads in grid["threads"]:
                    if name == sizes[-2][0] and threads > 1:
                        continue
                    jobs.append((path, seeds, epochs, threads))
    cores: dict[str, list[int]] = {"sweeps": sorted(os.sched_getaffinity(0)), "server": []}
    home = tempfile.TemporaryDirectory(prefix="iris-sweep-overhead-home-")
    with home, temporary_server(home=Path(home.name)) as api_url:
        env.update(PREFECT_API_URL=api_url, PREFECT_HOME=home.name)
        server = _server_pid()
        env["IRIS_SWEEP_BENCH_SERVER_PID"] = str(server)
        if args.server_cores:
            cores["sweeps"], cores["server"] = pin_server(server, args.server_cores)
        print(_header())
        for job in jobs:
            row = _child([str(part) for part in job], env)
            row["load_average_1_min_after"] = os.getloadavg()[0]
            row["server_pinned_elsewhere"] = bool(args.server_cores)
            rows.append(row)
            print(_row_line(row), flush=True)
    figures = ratios(rows, grid)
    print()
    for name, value in figures.items():
        print(f"{name}: {json.dumps(value)}")
    record = {
        "benchmark": "overhead",
        "mode": mode,
        "started": started,
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "load_average_1_5_15_min_before": load_before,
            "load_average_1_5_15_min_after": os.getloadavg(),  # other work on the machine
            "cores": cores,  # the sweeps' and, with --server-cores, the server's alone
        },
        "rows": rows,
        "ratios": figures,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

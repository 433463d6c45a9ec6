"""Benchmark: the notebook's per-model loop against each loop of the batched engine."""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

from irismodel import native
from irismodel.engine import predict_proba, train_batched, train_reference

HIDDEN_DIMS = list(range(8, 15))
OPTIMIZERS = ["sgd", "manual"]
EPOCHS = 1000
LEARNING_RATE = 0.1
SIZES = {"default": 10, "10x": 100}  # seeds per (hidden_dim, optimizer): 140 and 1,400 models
REFERENCE_SEEDS = 2  # the per-model loop is timed on this many seeds per task and scaled
WARM_UP_EPOCHS = 20  # one short untimed run of every engine first: steady state, not first calls


def training_data() -> tuple[np.ndarray, np.ndarray]:
    """The sweep's training split: 112 rows, stratified, fixed random state."""
    iris = load_iris()
    y = (iris.target == 1).astype(np.float32)
    x_train, _, y_train, _ = train_test_split(
        iris.data.astype(np.float32), y, test_size=0.25, random_state=0, stratify=y
    )
    return x_train, y_train


def accuracy(parameters: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return ((predict_proba(parameters, x) > 0.5) == y).mean(axis=1)


def measure(seeds_per_task: int, device: str, threads: int, loops: list[str]) -> list[dict]:
    """Train one size with the reference loop and each batched loop in this process."""
    torch.set_num_threads(threads)
    x, y = training_data()
    models = len(HIDDEN_DIMS) * len(OPTIMIZERS) * seeds_per_task
    configurations = [(h, opt) for h in HIDDEN_DIMS for opt in OPTIMIZERS]
    seeds = list(range(seeds_per_task))
    subset = seeds[:REFERENCE_SEEDS]
    train_reference(x, y, HIDDEN_DIMS[0], "sgd", subset, LEARNING_RATE, WARM_UP_EPOCHS, device)
    reference_seconds, reference_accuracy = 0.0, {}
    for hidden_dim, optimizer in configurations:
        run = train_reference(x, y, hidden_dim, optimizer, subset, LEARNING_RATE, EPOCHS, device)
        reference_seconds += run.train_seconds
        reference_accuracy[hidden_dim, optimizer] = accuracy(run.parameters, x, y)
    reference_models = len(configurations) * len(subset)
    reference_rate = reference_models * EPOCHS / reference_seconds

    rows = []
    for loop in loops:
        warm = train_batched(x, y, 8, "sgd", seeds, 0.1, WARM_UP_EPOCHS, device, loop=loop)
        batched_seconds, matches = 0.0, 0
        for hidden_dim, optimizer in configurations:  # one call per configuration, as the flow
            run = train_batched(
                x, y, hidden_dim, optimizer, seeds, LEARNING_RATE, EPOCHS, device, loop=loop
            )
            batched_seconds += run.train_seconds
            same = (
                reference_accuracy[hidden_dim, optimizer]
                == accuracy(run.parameters, x, y)[: len(subset)]
            )
            matches += int(same.sum())
        batched_rate = models * EPOCHS / batched_seconds
        rows.append(
            {
                "models": models,
                "epochs": EPOCHS,
                "threads": threads,
                "loop": loop,
                "engine": warm.engine,
                "batched_seconds": batched_seconds,
                "batched_model_epochs_per_s": batched_rate,
                "reference_models_timed": reference_models,
                "reference_model_epochs_per_s": reference_rate,
                "reference_seconds_scaled": models * EPOCHS / reference_rate,
                "speedup": batched_rate / reference_rate,
                "same_accuracy_fraction": matches / reference_models,
            }
        )
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    peak_gpu = torch.cuda.max_memory_allocated() if device.startswith("cuda") else None
    for row in rows:  # the process's peak, over every loop measured in it
        row.update(peak_rss_bytes=peak_rss, peak_gpu_bytes=peak_gpu)
    return rows


def available_loops(device: str) -> list[str]:
    """The batched loops that can run here: the compiled ones only when built."""
    loops = ["eager"]
    if native.load() is not None:
        loops[:0] = ["fused", "native"] if device == "cpu" else ["native"]
    return loops


def machine(device: str) -> dict:
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else platform.processor()
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
        "device_name": name or platform.machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), help="default, 10x, or seeds")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--max-models", type=int, default=2_000, help="skip larger sizes")
    parser.add_argument(
        "--loops", nargs="+", help="batched loops to time (default: all that run here)"
    )
    parser.add_argument("--json", type=Path, default=Path("bench/results/engine.json"))
    parser.add_argument("--child", nargs=2, metavar=("SEEDS", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    loops = args.loops or available_loops(args.device)
    if args.child:  # one size in a fresh process, so that ru_maxrss is this size's peak
        seeds, threads = int(args.child[0]), int(args.child[1])
        print(json.dumps(measure(seeds, args.device, threads, loops)))
        return

    rows = []
    header = f"{'models':>7} {'thr':>3} {'engine':>15} {'batched me/s':>13} {'reference me/s':>15}"
    header += f" {'ratio':>6} {'same acc':>8} {'peak RSS':>9}"
    print(header)
    for size in args.sizes:
        seeds = SIZES.get(size) or int(size)
        if len(HIDDEN_DIMS) * len(OPTIMIZERS) * seeds > args.max_models:
            print(f"skipping {size}: above --max-models")
            continue
        for threads in args.threads:
            command = [sys.executable, __file__, "--device", args.device, "--loops", *loops]
            command += ["--child", str(seeds), str(threads)]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            for row in json.loads(out.strip().splitlines()[-1]):
                rows.append({"size": size, **row})
                print(
                    f"{row['models']:>7} {threads:>3} {row['engine']:>15}"
                    f" {row['batched_model_epochs_per_s']:>13,.0f}"
                    f" {row['reference_model_epochs_per_s']:>15,.0f} {row['speedup']:>5.0f}x"
                    f" {row['same_accuracy_fraction']:>8.0%}"
                    f" {row['peak_rss_bytes'] / 2**20:>7.0f}MB",
                    flush=True,
                )
    print(
        f"reference loop timed on {REFERENCE_SEEDS} seeds per (hidden_dim, optimizer), i.e. "
        f"{REFERENCE_SEEDS * len(HIDDEN_DIMS) * len(OPTIMIZERS)} models, and scaled; "
        "ratio = batched / reference model-epochs per second, measured in the same process "
        f"after an untimed warm-up of each; one batched call per (hidden_dim, optimizer)"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    result = {"machine": machine(args.device), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    result["rows"] = rows
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

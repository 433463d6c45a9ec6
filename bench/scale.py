"""Scale benchmark: sweeps of 10k, 100k (and 1M) models through the command line, server warm.

For each size, `iris-sweep --hidden-dims 8..14 --optimizers sgd manual-no-zero-grad --seeds 0..N
--split-seeds 0 --no-report` (one data split: N seeds x 14 configurations are the size's models)
runs against an already started `prefect server start` (its own PREFECT_HOME) into
a fresh folder; the report of the published run is then made on its own. Measured per size:
wall seconds of the whole command, model-epochs per second end to end, the peak of the summed
RSS of the command's process tree (sampled from /proc every 0.2 s), the bytes written, and the
report's own wall time and peak RSS (`iris-sweep-report` on the published run, in its own
process). The engine's throughput on the same hidden dims and update rules (the fused kernel on
every core, one call per configuration, 1,000 seeds each) is measured in the same benchmark
run, in its own process, and each size's end-to-end throughput is given as a share of it.

    python bench/scale.py                       # 10k and 100k models
    python bench/scale.py --sizes 10k 100k 1m   # the million-model run too (~8 minutes here)
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HIDDEN = "8..14"
OPTIMIZERS = ["sgd", "manual-no-zero-grad"]
SIZES = {"10k": 715, "100k": 7143, "1m": 71429}  # seeds: x 7 hidden dims x 2 rules = models
EPOCHS = 1000

ENGINE_SCRIPT = """
import json, time, torch
from irismodel.data import load_dataset, split_dataset
from irismodel.engine import train_batched
torch.set_num_threads(torch.get_num_threads())
split = split_dataset(load_dataset())
seeds = list(range(1000))
train_batched(split.x_train, split.y_train, 8, "sgd", seeds[:50], 0.1, 50)  # warm-up
start = time.perf_counter()
engines = set()
for hidden_dim in range(8, 15):
    for optimizer in %r:
        run = train_batched(split.x_train, split.y_train, hidden_dim, optimizer, seeds, 0.1, %d)
        engines.add(run.engine)
seconds = time.perf_counter() - start
print(json.dumps({"model_epochs_per_s": 14 * 1000 * %d / seconds, "seconds": seconds,
                  "threads": torch.get_num_threads(), "engines": sorted(engines)}))
"""


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(p) for p in handle.read().split()]
    except OSError:
        return []


def _tree_rss(pid: int) -> int:
    """Return the summed VmRSS (bytes) of `pid` and every descendant."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            continue
        stack.extend(_children(current))
    return total


def _run_measured(args: list[str], env: dict[str, str], log: Path) -> tuple[float, int, int]:
    """Run `args`; return (wall seconds, peak tree RSS bytes, exit code)."""
    peak = 0
    with open(log, "wb") as output:
        start = time.perf_counter()
        process = subprocess.Popen(args, env=env, stdout=output, stderr=subprocess.STDOUT)
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _tree_rss(process.pid))
                done.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = process.wait()
        wall = time.perf_counter() - start
        done.set()
        sampler.join()
    return wall, peak, code


def _bytes_in(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["10k", "100k"], choices=list(SIZES))
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "scale.json"))
    parser.add_argument("--keep", action="store_true", help="keep the results folders")
    args = parser.parse_args()

    from cli.server import temporary_server

    bin_dir = Path(sys.executable).parent
    work = Path(tempfile.mkdtemp(prefix="iris-sweep-scale-"))
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONUNBUFFERED": "1"}
    engine = json.loads(
        subprocess.run(
            [sys.executable, "-c", ENGINE_SCRIPT % (OPTIMIZERS, EPOCHS, EPOCHS)],
            env=env, cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]
    )  # fmt: skip
    print(f"engine: {engine['model_epochs_per_s']:,.0f} model-epochs/s on {engine['threads']} "
          f"threads ({', '.join(engine['engines'])})")  # fmt: skip
    rows = []
    with temporary_server(home=work / "prefect-home") as api_url:
        env.update(PREFECT_API_URL=api_url, PREFECT_HOME=str(work / "prefect-home"))
        warm = work / "warm"
        subprocess.run(
            [str(bin_dir / "iris-sweep"), "--hidden-dims", "8", "--seeds", "0", "--epochs", "10",
             "--output-dir", str(warm)],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        for size in args.sizes:
            seeds = SIZES[size]
            out = work / size
            command = [
                str(bin_dir / "iris-sweep"), "--hidden-dims", HIDDEN, "--optimizers", *OPTIMIZERS,
                "--seeds", f"0..{seeds - 1}", "--split-seeds", "0", "--epochs", str(EPOCHS),
                "--output-dir", str(out),
                "--no-report",  # the sweep alone; its report is measured on its own below
            ]  # fmt: skip
            wall, peak, code = _run_measured(command, env, work / f"{size}.log")
            if code != 0:
                print((work / f"{size}.log").read_text()[-4000:])
                raise SystemExit(f"{size}: iris-sweep exited with {code}")
            (run,) = out.glob("iris-sweep-*")
            report = [str(bin_dir / "iris-sweep-report"), str(run), "--out", str(work / "report")]
            report_wall, report_peak, report_code = _run_measured(
                report, env, work / f"{size}-report.log"
            )
            parts = sorted(run.glob("*.parquet"))
            models = sum(pq.ParquetFile(part).metadata.num_rows for part in parts)  # as written
            row = {
                "size": size,
                "models": models,
                "model_epochs": models * EPOCHS,
                "wall_s": round(wall, 1),
                "model_epochs_per_s": round(models * EPOCHS / wall),
                "share_of_engine": round(models * EPOCHS / wall / engine["model_epochs_per_s"], 3),
                "peak_rss_mib": round(peak / 2**20),
                "bytes_written": _bytes_in(out),
                "parts": len(parts),
                "report_wall_s": round(report_wall, 1),
                "report_peak_rss_mib": round(report_peak / 2**20),
                "report_ok": report_code == 0,
            }
            rows.append(row)
            print(
                f"{size:>5}: {models:>9,} models  {wall:7.1f} s  "
                f"{row['model_epochs_per_s']:>12,} model-epochs/s "
                f"({row['share_of_engine']:.0%} of the engine)  peak RSS {row['peak_rss_mib']} MiB"
                f"  {row['bytes_written'] / 2**20:,.0f} MiB written in {row['parts']} parts  "
                f"report {report_wall:.1f} s, {row['report_peak_rss_mib']} MiB", flush=True,
            )  # fmt: skip
            if not args.keep:
                subprocess.run(["rm", "-rf", str(out)], check=False)
    record = {
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version()},
        "engine": engine,
        "sizes": rows,
    }  # fmt: skip
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(path.read_text()) if path.is_file() else {}
    kept = [r for r in previous.get("sizes", []) if r["size"] not in {r["size"] for r in rows}]
    record["sizes"] = sorted(kept + rows, key=lambda r: r["models"])
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

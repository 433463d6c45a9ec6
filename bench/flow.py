"""End-to-end benchmark: the default sweep through the iris-sweep flow, server already up.

Starts `prefect server start` on a free loopback port (its own PREFECT_HOME), runs one small
warm-up flow, then the default sweep (7 hidden dims x 3 optimizers x 400 seeds x 2 splits =
16,800 models, 1000 epochs, with its reference check of 63 models over 100 epochs), once
without the check and once with it, into a fresh folder. The
flow's wall time is split, from the task runs' own start and end times, into training (the
union of the train-* task intervals) and everything else. The reference is the notebook's
per-model loop over the same models, timed on one seed per configuration and scaled by the
number of (split, seed) pairs.

    python bench/flow.py [--json bench/results/flow.json]
"""

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(home: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": home, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return server, url
        except OSError:
            time.sleep(0.5)
    os.killpg(server.pid, signal.SIGTERM)
    raise RuntimeError("the Prefect server did not become healthy in 120 s")


def _union_seconds(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def _task_intervals(flow_run_id: str) -> list[tuple[str, float, float]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])), limit=200
        )
    return [
        (run.name, run.start_time.timestamp(), run.end_time.timestamp())
        for run in runs
        if run.start_time and run.end_time
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "flow.json"))
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="iris-sweep-bench-home-")
    server, url = _start_server(home)
    os.environ.update(PREFECT_HOME=home, PREFECT_API_URL=url)
    try:
        import torch

        from flows.iris_sweep import iris_sweep
        from irismodel import read_results
        from irismodel.data import load_dataset, split_dataset
        from irismodel.engine import train_reference
        from irismodel.parameters import SweepConfig

        defaults = SweepConfig()
        with tempfile.TemporaryDirectory(prefix="iris-sweep-bench-") as out:
            iris_sweep(hidden_dims=[8], seeds=[0], epochs=10, output_dir=f"{out}/warm-up")
            # the same sweep without the reference check first: what the check costs
            start = time.perf_counter()
            iris_sweep(output_dir=f"{out}/unchecked", reference_seeds=0)
            unchecked_wall = time.perf_counter() - start
            start, started_at = time.perf_counter(), time.time()
            state = iris_sweep(output_dir=f"{out}/sweep", return_state=True)
            wall = time.perf_counter() - start
            frame = read_results(f"{out}/sweep")
        flow_run_id = str(state.state_details.flow_run_id)
        intervals = _task_intervals(flow_run_id)
        training = _union_seconds([(a, b) for name, a, b in intervals if name.startswith("train-")])
        published = max(b for name, a, b in intervals if name.startswith("publish-results"))
        published -= started_at  # the results are on disk and readable from here
        report = sum(b - a for name, a, b in intervals if name.startswith("publish-report"))
        models = len(frame)

        split = split_dataset(load_dataset())
        torch.set_num_threads(1)
        reference_seconds = 0.0
        for hidden_dim in defaults.hidden_dims:
            for optimizer in defaults.optimizers:
                run = train_reference(
                    split.x_train,
                    split.y_train,
                    hidden_dim,
                    optimizer,
                    [0],
                    defaults.learning_rate,
                    defaults.epochs,
                )
                reference_seconds += run.train_seconds
        blocks = len(defaults.seeds) * len(defaults.split_seeds)
        reference_total = reference_seconds * blocks
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

    result = {
        "benchmark": "flow",
        "models": models,
        "epochs": defaults.epochs,
        "flow_wall_seconds": round(wall, 3),
        "flow_wall_seconds_without_reference_check": round(unchecked_wall, 3),
        "reference_check_share": round((wall - unchecked_wall) / wall, 3),
        "training_seconds": round(training, 3),
        "other_seconds": round(wall - training, 3),
        "published_seconds": round(published, 3),
        "report_seconds": round(report, 3),
        "speedup_to_published": round(reference_total / published, 1),
        "reference_seconds": round(reference_total, 3),
        "reference_note": f"notebook loop on 1 seed per configuration, scaled by "
        f"{blocks} (split, seed) pairs",
        "speedup_end_to_end": round(reference_total / wall, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
    }
    print(f"{'':32s}{'seconds':>10s}")
    print(f"{'flow, default sweep (wall)':32s}{wall:10.2f}   {models} models")
    print(f"{'  training (train-* tasks)':32s}{training:10.2f}")
    print(f"{'  everything else':32s}{wall - training:10.2f}")
    print(f"{'  of which the report':32s}{report:10.2f}")
    print(f"{'same sweep, no reference check':32s}{unchecked_wall:10.2f}")
    print(f"{'results published after':32s}{published:10.2f}")
    print(f"{'reference loop, same models':32s}{reference_total:10.2f}   (scaled from 1 seed)")
    print(f"{'speed-up, end to end':32s}{reference_total / wall:10.1f}x")
    print(f"{'speed-up, to published results':32s}{reference_total / published:10.1f}x")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Forecast benchmark: the run's forecast against the measured wall of the command line.

Runs `iris-sweep` as a user does (`make run`): no PREFECT_API_URL, so the command starts its own
temporary server, with a fresh PREFECT_HOME, into a fresh folder, and times the whole command.
Sizes: the default sweep (630 models) with the compiled loops already built and once more with
an empty build cache (the first use compiles them), then 10,500 models (seeds 0..499) and
100,002 models (seeds 0..4761), every other parameter at its default, report included. The
forecast is `irismodel.estimate.estimate` of the same parameters, on the same machine, told
what the command will do (the temporary server, the first-use compile). Writes
bench/results/forecast.json.

    python bench/forecast.py [--sizes default first-use 10k 100k]
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = {  # name: (seeds, or None for the default; compiled loops already built)
    "default": (None, True),
    "first-use": (None, False),
    "10k": ("0..237", True),  # x 2 splits x 7 hidden dims x 3 rules: 9,996 models
    "100k": ("0..2380", True),  # 100,002 models
}


def measure(name: str, work: Path) -> dict:
    """Run one size through the command line; return its forecast and its wall."""
    from irismodel.estimate import estimate
    from irismodel.parameters import SweepConfig

    seeds, built = SIZES[name]
    out = work / name
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(work / f"home-{name}")
    if not built:
        env["IRISMODEL_NATIVE_DIR"] = str(work / "empty-native-cache")
    given = {"seeds": seeds} if seeds else {}
    config = SweepConfig(**given, output_dir=str(out))
    forecast = estimate(config, compile_first=not built, starting=True, temporary_server=True)
    command = [str(Path(sys.executable).parent / "iris-sweep")]
    command += ["--seeds", seeds] if seeds else []
    command += ["--output-dir", str(out)]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{name}: iris-sweep exited with {done.returncode}\n{done.stderr}")
    printed = next(line for line in done.stderr.splitlines() if "model-epochs: about" in line)
    shutil.rmtree(out, ignore_errors=True)
    return {
        "size": name,
        "models": forecast.models,
        "forecast_s": round(forecast.seconds, 1),
        "wall_s": round(wall, 1),
        "wall_over_forecast": round(wall / forecast.seconds, 2),
        # the machine is shared: the 1-minute load average before and after, on 2 cores
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "forecast_parts_s": {what: round(s, 1) for what, s in forecast.parts},
        "printed": printed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "forecast.json"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="iris-sweep-forecast-") as folder:
        for name in args.sizes:
            row = measure(name, Path(folder))
            rows.append(row)
            print(
                f"{name:>9}: {row['models']:>7,} models  forecast {row['forecast_s']:6.1f} s  "
                f"wall {row['wall_s']:6.1f} s  ratio {row['wall_over_forecast']:.2f}  "
                f"load {row['load_average']}",
                flush=True,
            )
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "sizes": rows,
    }
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

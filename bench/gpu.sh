#!/usr/bin/env bash
# The GPU checks, in one run on a machine with a CUDA device and torch, sklearn, scipy, pandas,
# pyarrow, matplotlib and pytest installed (no Prefect needed): the compiled loops built on first
# use, the test suite's CUDA cases, the engine benchmark at 10k and 100k models, and sweeps
# through the library's data path (train, check against the notebook's loop, evaluate, write
# Parquet parts, publish) on the GPU and on the CPU of the same machine.
# Usage: bash bench/gpu.sh OUT_DIR [all|checks]   (checks: no engine benchmark). Where the
# image lacks pydantic, put its wheels (pydantic, pydantic-core, annotated-types,
# typing-inspection for that Python) in .whl/ first.
set -u
out=${1:-bench/results}
what=${2:-all}
mkdir -p "$out"
# pydantic (the parameters' declaration uses it) is not on every GPU image: wheels in .whl/
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 IRISMODEL_NATIVE_DIR=${IRISMODEL_NATIVE_DIR:-/tmp/iris-native}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
# built on first use by a CUDA training (the native loop), from an empty cache
python3 - <<'PY' 2>&1 | tee "$out/first_use_build.log"
import logging, numpy as np
logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
from irismodel.parameters import SweepConfig
from irismodel.preflight import check_data
from irismodel.engine import train_batched
split = check_data(SweepConfig(output_dir="/tmp/iris-gpu-probe"))
run = train_batched(split.x_train, split.y_train, 10, "sgd", list(range(20)), 0.1, 200, "cuda")
print("engine:", run.engine, "final loss seed 0:", float(run.loss_curves[0, -1]))
PY
python3 -m pytest -p no:cacheprovider -q -o addopts="" tests/irismodel \
  --ignore=tests/irismodel/test_readers.py --ignore=tests/irismodel/test_sweep.py \
  -k "cuda" --continue-on-collection-errors 2>&1 | tee "$out/gpu_tests.log" | tail -25
if [ "$what" = all ]; then
  python3 bench/engine.py --device cuda --sizes 715 7143 --threads 1 --max-models 200000 \
    --json "$out/engine_cuda.json" 2>&1 | tee "$out/engine_cuda.log"
  python3 bench/engine.py --device cpu --sizes 715 --threads 16 --max-models 200000 \
    --json "$out/engine_cpu16.json" 2>&1 | tee "$out/engine_cpu16.log"
fi
python3 - "$out" <<'PY' 2>&1 | tee "$out/sweep_gpu.log"
import json, sys, tempfile, time, torch
from irismodel.parameters import SweepConfig
from irismodel import read_results
from irismodel.sweep import run_sweep
rows = []
for device, seeds in (("cuda", "0..714"), ("cuda", "0..7142"), ("cpu", "0..7142")):
    with tempfile.TemporaryDirectory() as folder:
        config = SweepConfig(seeds=seeds, device=device, output_dir=folder)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        path = run_sweep(config, flow_run_id=f"bench-{device}")
        seconds = time.perf_counter() - start
        frame = read_results(path)
        checked = frame[frame["reference_checked"]]
        row = {"device": device, "models": len(frame), "epochs": config.epochs,
               "seconds": round(seconds, 2), "peak_gpu_bytes": torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0,
               "threads": torch.get_num_threads(), "engines": sorted(set(frame["engine"])),
               "outcomes": frame.groupby(["optimizer", "outcome"]).size().to_dict(),
               "reference_max_abs_diff": checked.groupby("optimizer")["reference_max_abs_diff"].max().to_dict(),
               "reference_agrees": float(checked["reference_agrees"].mean())}
        row["outcomes"] = {f"{k[0]}:{k[1]}": int(v) for k, v in row["outcomes"].items()}
        rows.append(row)
        print(row, flush=True)
json.dump(rows, open(f"{sys.argv[1]}/sweep_gpu.json", "w"), indent=2)
PY

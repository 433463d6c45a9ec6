#!/usr/bin/env bash
# The GPU checks, in one run on a machine with a CUDA device and torch, sklearn, scipy, pandas,
# pyarrow, matplotlib and pytest installed (no Prefect needed): the test suite's CUDA cases, the
# engine benchmark at 10k and 100k models, and a 100k-model sweep through the library's data path
# (train, evaluate, write Parquet parts, publish) on the GPU and on the CPU of the same machine.
# Usage: bash bench/gpu.sh OUT_DIR
set -u
out=${1:-bench/results}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 IRISMODEL_NATIVE_DIR=${IRISMODEL_NATIVE_DIR:-/tmp/iris-native}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
python3 -m irismodel.native build
python3 -m pytest -p no:cacheprovider -q -o addopts="" tests/irismodel \
  --ignore=tests/irismodel/test_readers.py --ignore=tests/irismodel/test_sweep.py -k "cuda" --continue-on-collection-errors 2>&1 | tee "$out/gpu_tests.log" | tail -25
python3 bench/engine.py --device cuda --sizes 715 7143 --threads 1 --max-models 200000 \
  --json "$out/engine_cuda.json" 2>&1 | tee "$out/engine_cuda.log"
python3 bench/engine.py --device cpu --sizes 715 --threads 16 --max-models 200000 \
  --json "$out/engine_cpu16.json" 2>&1 | tee "$out/engine_cpu16.log"
python3 - "$out" <<'PY' 2>&1 | tee "$out/sweep_gpu.log"
import json, sys, tempfile, time, torch
from irismodel.config import validate_config
from irismodel.sweep import run_sweep
rows = []
for device in ("cuda", "cpu"):
    with tempfile.TemporaryDirectory() as folder:
        config = validate_config(seeds="0..7142", device=device, output_dir=folder)
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        run_sweep(config, flow_run_id=f"bench-{device}")
        seconds = time.perf_counter() - start
        row = {"device": device, "models": 7 * 2 * 7143, "epochs": config.epochs,
               "seconds": seconds, "peak_gpu_bytes": torch.cuda.max_memory_allocated(),
               "threads": torch.get_num_threads()}
        rows.append(row)
        print(row, flush=True)
json.dump(rows, open(f"{sys.argv[1]}/sweep_gpu.json", "w"), indent=2)
PY

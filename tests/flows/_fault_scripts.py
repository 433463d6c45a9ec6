"""Helpers for fault tests: synthetic results tables, and a writer process to kill mid-write.

Run as a script, `python tests/flows/_fault_scripts.py write-loop OUTPUT_DIR ROWS EPOCHS`
builds one results table, prints `ready`, then writes it as new files under OUTPUT_DIR through
`irismodel.results.write_results` until it is killed.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from irismodel import results


def synthetic_table(run_id: str, rows: int = 4, epochs: int = 10, seed: int = 0) -> pa.Table:
    """Return a valid results table of `rows` made-up models, as a run would write it."""
    rng = np.random.default_rng(seed)
    started = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    records = []
    for index in range(rows):
        curve = rng.random(epochs, dtype=np.float32)
        record = {name: None for name in results.COLUMNS}
        record.update(
            flow_run_id=run_id,
            run_started_at=started,
            hidden_dim=8,
            optimizer="sgd",
            seed=index,
            learning_rate=0.1,
            epochs=epochs,
            test_size=0.25,
            split_seed=0,
            standardize=False,
            positive_class="versicolor",
            data_source="bundled:iris",
            data_fingerprint="0" * 64,
            n_train=112,
            n_test=38,
            device="cpu",
            engine="batched",
            worker="test:0",
            loss_curve=curve.tolist(),
            final_train_loss=float(curve[-1]),
            diverged=False,
            train_accuracy=0.9,
            train_seconds=0.01,
        )
        records.append(record)
    return results.to_table(records, {"hidden_dims": [8]})


def write_loop(output_dir: str, rows: int, epochs: int) -> None:
    """Write one table again and again under new names, until killed."""
    table = synthetic_table(f"loop-{os.getpid()}", rows, epochs, seed=os.getpid())
    print("ready", flush=True)
    for count in range(1_000_000):
        name = results.file_name(f"loop-{os.getpid()}-{count}", datetime.now(UTC))
        results.write_results(table, output_dir, name)


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    if command != "write-loop":
        raise SystemExit(f"unknown command {command!r}; known: write-loop")
    write_loop(arguments[0], int(arguments[1]), int(arguments[2]))

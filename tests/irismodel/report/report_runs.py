"""Small real and synthetic results the report tests read, and helpers that edit them."""

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from irismodel.parameters import SweepConfig
from irismodel.preflight import check_data
from irismodel.store import layout, schema
from irismodel.sweep import run_sweep

EPOCHS = 120  # short: some plateaus are still there, and some models never beat the baseline
MAIN = "run-main"
BLOWN = "run-blown-up"  # lr 100: the loss oscillates far above its start, never NaN
NAN = "run-nan"  # lr 1e20: NaN/inf
NOT_HELD_OUT = "run-not-held-out"
RULES = ["sgd", "manual", "manual-no-zero-grad"]


def real_run(folder, run_id: str, minute: int, **parameters: Any):
    """Run the flow's library path without Prefect; return the run folder and its split."""
    parameters = {"split_seeds": "0", "epochs": EPOCHS, **parameters}
    config = SweepConfig(output_dir=str(folder), device="cpu", **parameters)
    path = run_sweep(config, run_id, datetime(2026, 1, 2, 3, minute, tzinfo=UTC))
    return path, check_data(config)


def png_size(data: bytes) -> tuple[int, int]:
    """The size of a valid PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
        return image.size


def rows_of(frame: pd.DataFrame, run_id: str) -> pd.DataFrame:
    return frame[frame.flow_run_id == run_id].reset_index(drop=True)


def with_loss_at(rows: pd.DataFrame, epoch: int, values: np.ndarray) -> pd.DataFrame:
    """`rows` with loss_curve[epoch - 1] replaced by `values`, row by row."""
    curves = []
    for curve, value in zip(rows.loss_curve, values, strict=True):
        curve = np.array(curve, dtype=np.float32)
        curve[epoch - 1] = value
        curves.append(curve)
    return rows.assign(loss_curve=curves)


def rewrite(run_folder: Path, edit) -> None:
    """Apply `edit(table) -> table` to every part file of a run folder, metadata kept."""
    for path in sorted(run_folder.glob("*.parquet")):
        table = pq.read_table(path)
        pq.write_table(edit(table).replace_schema_metadata(table.schema.metadata), path)


def as_version(run_folder: Path, target: Path, version: str) -> Path:
    """Copy a run folder's part files rewritten as an older schema version wrote them."""
    wanted = {"1": schema.SCHEMA_V1, "2": schema.SCHEMA_V2}[version]
    target.mkdir(parents=True)
    for path in sorted(run_folder.glob("*.parquet")):
        table = pq.read_table(path)
        meta = dict(table.schema.metadata)
        meta[layout.META_SCHEMA_VERSION] = version.encode()
        table = table.select(wanted.names).cast(wanted).replace_schema_metadata(meta)
        pq.write_table(table, target / path.name)
    return target


SYNTHETIC_DIMS = (4, 8, 16, 32)
SYNTHETIC_OPTIMIZERS = ("sgd", "manual", "manual-no-zero-grad", "momentum", "adam")
SYNTHETIC_EPOCHS = 200
SYNTHETIC_SEEDS = 250  # per run: 1,000 a configuration, enough for close histogram percentiles
N_TRAIN, N_TEST, TRAIN_POSITIVE, TEST_POSITIVE = 112, 38, 37, 13


def synthetic_run(
    run_id: str,
    started: datetime,
    seeds: np.ndarray,
    epochs: int,
    rng: np.random.Generator,
    *,
    new_columns: bool = True,
) -> pa.Table:
    """One run's results: every hidden_dim x optimizer x seed, float32 curves, a few diverged.

    manual's curves equal sgd's (same hidden_dim and seed), as the real update guarantees;
    accuracy, precision and recall come from one confusion matrix, so the majority class can
    be inferred from them as well as read from `n_*_positive` (written when `new_columns`).
    """
    dims, optimizers, seed = (
        a.ravel()
        for a in np.meshgrid(
            np.array(SYNTHETIC_DIMS), np.arange(len(SYNTHETIC_OPTIMIZERS)), seeds, indexing="ij"
        )
    )
    n = len(seed)
    kind = np.where(optimizers == 1, 0, optimizers)  # manual draws sgd's curve
    keys, which = np.unique(
        np.stack([dims, kind, np.searchsorted(seeds, seed)]), axis=1, return_inverse=True
    )
    k = keys.shape[1]
    t = np.arange(epochs, dtype=np.float32)
    start = rng.uniform(0.5, 0.8, k).astype(np.float32)
    floor = rng.uniform(0.01, 0.4, k).astype(np.float32)
    tau = rng.uniform(5, epochs / 2, k).astype(np.float32)
    curves = floor[:, None] + (start - floor)[:, None] * np.exp(-t[None, :] / tau[:, None])
    curves += np.abs(rng.standard_normal((k, epochs), dtype=np.float32)) * np.float32(0.01)
    curves = curves[which.ravel()]
    diverged = (optimizers == 2) & (rng.random(n) < 0.02)
    curves[diverged, epochs // 2 :] = np.nan
    columns: dict[str, Any] = {}
    for part, size, positive in (
        ("train", N_TRAIN, TRAIN_POSITIVE),
        ("test", N_TEST, TEST_POSITIVE),
    ):
        true_pos = rng.integers(1, positive + 1, n)
        false_pos = rng.integers(0, (size - positive) // 3, n)
        columns[f"{part}_accuracy"] = (true_pos + size - positive - false_pos) / size
        columns[f"{part}_precision"] = true_pos / (true_pos + false_pos)
        columns[f"{part}_recall"] = true_pos / positive
    values = {
        "flow_run_id": pa.array([run_id] * n),
        "run_started_at": pa.array([started] * n, pa.timestamp("us", tz="UTC")),
        "run_status": pa.array(["complete"] * n),
        "hidden_dim": pa.array(dims.astype(np.int32)),
        "optimizer": pa.array(np.array(SYNTHETIC_OPTIMIZERS)[optimizers]),
        "seed": pa.array(seed.astype(np.int64)),
        "learning_rate": pa.array(np.full(n, 0.1)),
        "epochs": pa.array(np.full(n, epochs, dtype=np.int32)),
        "test_size": pa.array(np.full(n, 0.25)),
        "split_seed": pa.array(np.zeros(n, dtype=np.int64)),
        "standardize": pa.array(np.zeros(n, dtype=bool)),
        "positive_class": pa.array(["versicolor"] * n),
        "data_fingerprint": pa.array(["f" * 64] * n),
        "n_train": pa.array(np.full(n, N_TRAIN, dtype=np.int32)),
        "n_test": pa.array(np.full(n, N_TEST, dtype=np.int32)),
        "loss_curve": pa.ListArray.from_arrays(
            pa.array(np.arange(n + 1, dtype=np.int32) * epochs), pa.array(curves.ravel())
        ),
        "final_train_loss": pa.array(np.where(diverged, np.nan, curves[:, -1]).astype(np.float64)),
        "diverged": pa.array(diverged),
        **{name: pa.array(column) for name, column in columns.items()},
    }
    if new_columns:
        values["outcome"] = pa.array(np.where(diverged, "diverged", "converged"))
        values["n_train_positive"] = pa.array(np.full(n, TRAIN_POSITIVE, dtype=np.int32))
        values["n_test_positive"] = pa.array(np.full(n, TEST_POSITIVE, dtype=np.int32))
    return pa.table(values)


def write_synthetic(folder: Path, tables: list[pa.Table]) -> list[Path]:
    """Write each table as its own results file, as a run's part files are."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, table in enumerate(tables):
        path = folder / f"iris-sweep-part-{i:05d}.parquet"
        pq.write_table(table, path, compression="zstd")
        paths.append(path)
    return paths


def curves_of(table: pa.Table) -> np.ndarray:
    return table.column("loss_curve").combine_chunks().flatten().to_numpy().reshape(len(table), -1)

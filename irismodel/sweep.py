"""A sweep's steps as plain functions: a shard trained, evaluated and written; a whole sweep."""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from irismodel.data import Split
from irismodel.engine import TrainingRun, predict_proba, train_batched
from irismodel.metrics import METRIC_NAMES, binary_metrics
from irismodel.model import PARAMETER_NAMES
from irismodel.outcomes import baseline_loss, classify
from irismodel.parameters import SweepConfig
from irismodel.preflight import check_splits
from irismodel.reference import ReferenceCheck, check_against_reference, checked_seeds
from irismodel.store import OpenedRun, RunFolder, Shard, open_run, plan_shards, publish_run
from irismodel.store.layout import STATUS_COMPLETE, writer_id
from irismodel.store.schema import SCHEMA, part_metadata
from irismodel.store.writer import write_file, write_parquet

# models x rows x hidden units (at least 8) evaluated at once: the (models, rows) arrays stay in
# cache, under 1 MB (measured: 2,048 models of 112 rows evaluate 30% slower than 1,024), and
# einsum's (models, rows, hidden) scratch, where the compiled module is not built, ~8 MB
METRICS_VALUES = 1 << 20


@dataclass(frozen=True)
class RunContext:
    """What every shard of one run shares: small, so it travels to every task cheaply."""

    flow_run_id: str  # the run's id (a resumed run keeps the id it started with)
    run_started_at: datetime
    config: SweepConfig
    place: RunFolder


@dataclass(frozen=True)
class ShardSummary:
    """What a shard task hands back: where its rows are and a few counts, never the curves."""

    shard: str
    rows: int
    part: str  # the part file's name in the run folder
    worker: str  # host:pid of the process that trained and wrote it
    engine: str
    train_seconds: float
    n_diverged: int


def diverged_mask(run: TrainingRun) -> np.ndarray:
    """Return (K,) bool: a model's loss or a final weight is NaN or infinite."""
    k = len(run.seeds)
    finite = np.isfinite(run.loss_curves).all(1)
    for values in run.parameters.values():
        finite &= np.isfinite(values.reshape(k, -1)).all(1)
    return ~finite


def shard_table(
    run: TrainingRun,
    split: Split,
    context: RunContext,
    shard: str,
    worker: str,
    check: ReferenceCheck,
    split_seed: int,
) -> pa.Table:
    """Return one trained shard's rows (split `split_seed`, reference `check`) as a SCHEMA table."""
    k, epochs = run.loss_curves.shape if len(run.seeds) else (0, run.epochs)
    diverged = diverged_mask(run)
    columns: dict[str, pa.Array] = {}

    def constant(name: str, value: object) -> None:
        columns[name] = pa.repeat(pa.scalar(value, SCHEMA.field(name).type), k)

    for source, names in (
        (run, ("hidden_dim", "optimizer", "learning_rate", "epochs", "device", "engine")),
        (split, ("positive_class", "data_source", "data_fingerprint")),
        (context, ("flow_run_id", "run_started_at")),
        (context.config, ("test_size", "standardize")),
    ):
        for name in names:
            constant(name, getattr(source, name))
    constant("run_status", STATUS_COMPLETE)
    columns["seed"] = pa.array(np.asarray(run.seeds, dtype=np.int64))
    constant("split_seed", split_seed)
    constant("worker", worker)
    constant("shard", shard)
    columns["loss_curve"] = _lists(run.loss_curves.reshape(k, epochs))
    last = run.loss_curves[:, -1] if k else np.empty(0, np.float32)
    columns["final_train_loss"] = pa.array(last.astype(np.float64))
    columns["diverged"] = pa.array(diverged)
    accuracy = {}
    for part in ("train", "test"):
        x, y = getattr(split, f"x_{part}"), getattr(split, f"y_{part}")
        constant(f"n_{part}", len(y))
        constant(f"n_{part}_positive", int(y.sum()))
        chunks, size = [], max(1, METRICS_VALUES // max(1, len(y) * max(8, run.hidden_dim)))
        for lo in range(0, k, size):
            rows = slice(lo, lo + size)
            chunk = {n: v[rows] for n, v in run.parameters.items()}
            chunks.append(binary_metrics(predict_proba(chunk, x), y, diverged[rows]))
        scores = {n: np.concatenate([c[n] for c in chunks] or [np.empty(0)]) for n in METRIC_NAMES}
        accuracy[part] = scores["accuracy"]
        columns |= {f"{part}_{n}": pa.array(v, mask=np.isnan(v)) for n, v in scores.items()}
    constant("train_seconds", run.train_seconds / max(k, 1))
    baseline = baseline_loss(split.x_train, split.y_train)
    positive_share = float(split.y_train.mean()) if len(split.y_train) else 0.5
    majority = max(positive_share, 1 - positive_share)
    outcome = classify(run.loss_curves, diverged, baseline, accuracy["train"], majority)
    columns["outcome"] = pa.array(outcome, pa.string())
    constant("baseline_loss", baseline)
    columns["reference_checked"] = pa.array(check.checked)
    unchecked = ~check.checked
    columns["reference_epochs"] = pa.array(np.full(k, check.epochs, np.int32), mask=unchecked)
    columns["reference_max_abs_diff"] = pa.array(check.max_abs_diff, mask=unchecked)
    columns["reference_agrees"] = pa.array(check.agrees, mask=unchecked)
    curve_type = SCHEMA.field("reference_loss_curve").type
    columns["reference_loss_curve"] = pa.array(check.curves, curve_type)
    for name in PARAMETER_NAMES:  # flattened row-major per model; fc2.bias a scalar column
        values = np.asarray(run.parameters[name], np.float32)
        values = values.reshape(k, math.prod(values.shape[1:]))
        scalar = name == "fc2.bias"
        columns[name.replace(".", "_")] = pa.array(values[:, 0]) if scalar else _lists(values)
    return pa.Table.from_arrays([columns[name] for name in SCHEMA.names], schema=SCHEMA)


def _lists(values: np.ndarray) -> pa.ListArray:
    """(K, M) values as K float32 lists of M, sharing one values buffer."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    k, m = values.shape
    offsets = pa.array(np.arange(0, k * m + 1, m, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1)))


def run_shard(
    splits: Mapping[int, Split] | Split, shard: Shard, context: RunContext
) -> ShardSummary:
    """Train every seed of one shard at once, evaluate them, write their rows; return a summary.

    `splits` holds the run's splits by split seed (`check_splits`), or is the shard's own split.
    The part file is written atomically, replacing one an earlier attempt left.
    """
    config = context.config
    split = splits[shard.split_seed] if isinstance(splits, Mapping) else splits
    data = (split.x_train, split.y_train, shard.hidden_dim, shard.optimizer, shard.seeds(config))
    run = train_batched(*data, config.learning_rate, config.epochs, config.resolved_device)
    ref = checked_seeds(config.seeds, config.reference_seeds, config.split_seeds, shard.split_seed)
    check = check_against_reference(split, run, config.learning_rate, ref, config.reference_epochs)
    worker = writer_id()
    metadata = part_metadata(config.parameters(), context.flow_run_id, shard.name, worker)
    table = shard_table(run, split, context, shard.name, worker, check, shard.split_seed)
    table = table.replace_schema_metadata(metadata)
    names = context.place.staging_names(shard.file_name)
    write_file(context.place.root, names, lambda out: write_parquet(table, out), replace=True)
    return ShardSummary(
        shard=shard.name,
        rows=table.num_rows,
        part=shard.file_name,
        worker=worker,
        engine=run.engine,
        train_seconds=run.train_seconds,
        n_diverged=int(table["diverged"].to_numpy().sum()),
    )


def context_of(opened: OpenedRun, config: SweepConfig) -> RunContext:
    """Return the context every shard of an opened run shares."""
    return RunContext(opened.run_id, opened.started_at, config, opened.place)


def run_sweep(
    config: SweepConfig, flow_run_id: str = "local", started_at: datetime | None = None
) -> str:
    """Run a validated sweep here, without Prefect, resuming it if unfinished; return its folder."""
    splits = check_splits(config)
    fingerprint = next(iter(splits.values())).data_fingerprint
    opened = open_run(config, flow_run_id, started_at or datetime.now(UTC), fingerprint)
    if opened.published:
        return opened.place.published
    context = context_of(opened, config)
    for shard in plan_shards(config):
        if shard.name not in opened.finished:
            run_shard(splits, shard, context)
    published = publish_run(opened.place, [], config, opened.run_id)
    assert published is not None
    return published

"""The results table's columns, types included, and their versions: one list for every reader."""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from importlib import metadata
from typing import Any

import pyarrow as pa

from .layout import (
    META_PARAMETERS,
    META_PROVENANCE,
    META_RUN_ID,
    META_SCHEMA_VERSION,
    META_SHARD,
    META_VERSIONS,
    META_WRITER,
)

# Version 4 changed what `outcome` means and added no column: version 3 files read as they are.
SCHEMA_VERSION = "5"

_METRIC_FIELDS = [
    pa.field(f"{part}_{metric}", pa.float64())
    for part in ("train", "test")
    for metric in ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
]

SCHEMA = pa.schema(
    [
        pa.field("flow_run_id", pa.string(), nullable=False),
        pa.field("run_started_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("run_status", pa.string(), nullable=False),
        pa.field("hidden_dim", pa.int32(), nullable=False),
        pa.field("optimizer", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("learning_rate", pa.float64(), nullable=False),
        pa.field("epochs", pa.int32(), nullable=False),
        pa.field("test_size", pa.float64(), nullable=False),
        pa.field("split_seed", pa.int64(), nullable=False),
        pa.field("standardize", pa.bool_(), nullable=False),
        pa.field("positive_class", pa.string(), nullable=False),
        pa.field("data_source", pa.string(), nullable=False),
        pa.field("data_fingerprint", pa.string(), nullable=False),
        pa.field("n_train", pa.int32(), nullable=False),
        pa.field("n_test", pa.int32(), nullable=False),
        pa.field("n_train_positive", pa.int32()),
        pa.field("n_test_positive", pa.int32()),
        pa.field("device", pa.string(), nullable=False),
        pa.field("engine", pa.string(), nullable=False),
        pa.field("worker", pa.string(), nullable=False),
        pa.field("shard", pa.string()),
        pa.field("loss_curve", pa.list_(pa.float32()), nullable=False),
        pa.field("final_train_loss", pa.float64()),
        pa.field("diverged", pa.bool_(), nullable=False),
        *_METRIC_FIELDS,
        pa.field("train_seconds", pa.float64(), nullable=False),
        pa.field("outcome", pa.string()),
        pa.field("baseline_loss", pa.float64()),
        pa.field("reference_checked", pa.bool_()),
        pa.field("reference_epochs", pa.int32()),
        pa.field("reference_max_abs_diff", pa.float64()),
        pa.field("reference_agrees", pa.bool_()),
        pa.field("reference_loss_curve", pa.list_(pa.float32())),
        # The final parameters as NeuralNet holds them, each tensor flattened row-major (C order).
        pa.field("fc1_weight", pa.list_(pa.float32())),  # (hidden_dim, 4)
        pa.field("fc1_bias", pa.list_(pa.float32())),  # (hidden_dim,)
        pa.field("fc2_weight", pa.list_(pa.float32())),  # (1, hidden_dim)
        pa.field("fc2_bias", pa.float32()),  # (1,), as a scalar
    ]
)
COLUMNS = tuple(SCHEMA.names)
# Versions only ever added columns (none was renamed or retyped): an older file is the current
# schema less these, and reads with them null.
ADDED_IN_2 = ("n_train_positive", "n_test_positive", "shard")
ADDED_IN_3 = tuple(SCHEMA.names[-11:-4])  # the outcome and the reference check
ADDED_IN_5 = tuple(SCHEMA.names[-4:])  # the trained weights
SCHEMA_V4 = pa.schema([f for f in SCHEMA if f.name not in ADDED_IN_5])
SCHEMA_V2 = pa.schema([f for f in SCHEMA_V4 if f.name not in ADDED_IN_3])
SCHEMA_V1 = pa.schema([f for f in SCHEMA_V2 if f.name not in ADDED_IN_2])
SCHEMAS = {"1": SCHEMA_V1, "2": SCHEMA_V2, "3": SCHEMA_V4, "4": SCHEMA_V4, SCHEMA_VERSION: SCHEMA}

# The per-model columns the report reads (every file must hold them), then those only newer files
# hold (null in older ones); counts and flags among them as float64, so that a null is a NaN.
MODEL_COLUMNS = (
    *("flow_run_id", "run_started_at", "run_status", "hidden_dim", "optimizer", "seed"),
    *("learning_rate", "epochs", "standardize", "test_size", "split_seed", "positive_class"),
    *("data_fingerprint", "n_train", "n_test", "diverged", "final_train_loss"),
    *(f"{p}_{m}" for p in ("train", "test") for m in ("accuracy", "precision", "recall")),
)
LATER_COLUMNS = (
    *("engine", "outcome", "n_train_positive", "n_test_positive", "baseline_loss"),
    *("reference_checked", "reference_epochs", "reference_max_abs_diff", "reference_agrees"),
)
AS_FLOAT = [name for name in LATER_COLUMNS if SCHEMA.field(name).type in (pa.int32(), pa.bool_())]


def package_versions() -> dict[str, str]:
    """Return the versions of Python and the packages that shape the results."""
    versions = {"python": platform.python_version()}
    for name in ("iris-sweep", "torch", "numpy", "scikit-learn", "pyarrow", "prefect"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def part_metadata(
    parameters: Mapping[str, Any], run_id: str, shard: str, writer: str
) -> dict[bytes, bytes | str]:
    """Return the metadata of one part file: what it is, of which run, which process wrote it."""
    # imported here: the store reads results without loading torch, which provenance asks
    from irismodel.provenance import provenance

    return {
        META_SCHEMA_VERSION: SCHEMA_VERSION,
        META_PARAMETERS: json.dumps(dict(parameters), sort_keys=True),
        META_VERSIONS: json.dumps(package_versions(), sort_keys=True),
        META_RUN_ID: run_id,
        META_SHARD: shard,
        META_WRITER: writer,
        META_PROVENANCE: json.dumps(provenance(), sort_keys=True),
    }


def schema_problem(schema: pa.Schema, version: str | None = SCHEMA_VERSION) -> str | None:
    """Say why a file's Arrow schema is no results schema of `version` (None: any); else None."""
    meta = schema.metadata or {}
    found = meta.get(META_SCHEMA_VERSION)
    if found is None:
        return "is not an iris-sweep results file (no schema version)"
    text = found.decode(errors="replace")
    if version is not None and text != version:
        return "is not of this schema version"
    if text not in SCHEMAS:
        return f"has schema version {text}; this reader reads versions {', '.join(SCHEMAS)}"
    if not schema.equals(SCHEMAS[text], check_metadata=False):
        return "does not match the results schema"
    return None

"""The results table's columns, types included, and their versions: one list for every reader."""

import functools
import json
import platform
from collections.abc import Mapping
from importlib import metadata
from typing import Any

import pyarrow as pa

from . import layout

SCHEMA_VERSION = "5"

# Every column in order, with the schema version that added it. Versions only ever added columns
# (none was renamed or retyped): an older file is the current schema less the later columns, and
# reads with them null. Version 4 changed what `outcome` means and added no column.
_FIELDS = [
    (pa.field("flow_run_id", pa.string(), nullable=False), 1),
    (pa.field("run_started_at", pa.timestamp("us", tz="UTC"), nullable=False), 1),
    (pa.field("run_status", pa.string(), nullable=False), 1),
    (pa.field("hidden_dim", pa.int32(), nullable=False), 1),
    (pa.field("optimizer", pa.string(), nullable=False), 1),
    (pa.field("seed", pa.int64(), nullable=False), 1),
    (pa.field("learning_rate", pa.float64(), nullable=False), 1),
    (pa.field("epochs", pa.int32(), nullable=False), 1),
    (pa.field("test_size", pa.float64(), nullable=False), 1),
    (pa.field("split_seed", pa.int64(), nullable=False), 1),
    (pa.field("standardize", pa.bool_(), nullable=False), 1),
    (pa.field("positive_class", pa.string(), nullable=False), 1),
    (pa.field("data_source", pa.string(), nullable=False), 1),
    (pa.field("data_fingerprint", pa.string(), nullable=False), 1),
    *((pa.field(name, pa.int32(), nullable=False), 1) for name in ("n_train", "n_test")),
    *((pa.field(name, pa.int32()), 2) for name in ("n_train_positive", "n_test_positive")),
    *((pa.field(name, pa.string(), nullable=False), 1) for name in ("device", "engine", "worker")),
    (pa.field("shard", pa.string()), 2),
    (pa.field("loss_curve", pa.list_(pa.float32()), nullable=False), 1),
    (pa.field("final_train_loss", pa.float64()), 1),
    (pa.field("diverged", pa.bool_(), nullable=False), 1),
    *(
        (pa.field(f"{part}_{metric}", pa.float64()), 1)
        for part in ("train", "test")
        for metric in ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
    ),
    (pa.field("train_seconds", pa.float64(), nullable=False), 1),
    (pa.field("outcome", pa.string()), 3),
    (pa.field("baseline_loss", pa.float64()), 3),
    (pa.field("reference_checked", pa.bool_()), 3),
    (pa.field("reference_epochs", pa.int32()), 3),
    (pa.field("reference_max_abs_diff", pa.float64()), 3),
    (pa.field("reference_agrees", pa.bool_()), 3),
    (pa.field("reference_loss_curve", pa.list_(pa.float32())), 3),
    # The final parameters as NeuralNet holds them, each tensor flattened row-major (C order).
    (pa.field("fc1_weight", pa.list_(pa.float32())), 5),  # (hidden_dim, 4)
    (pa.field("fc1_bias", pa.list_(pa.float32())), 5),  # (hidden_dim,)
    (pa.field("fc2_weight", pa.list_(pa.float32())), 5),  # (1, hidden_dim)
    (pa.field("fc2_bias", pa.float32()), 5),  # (1,), as a scalar
]
_VERSIONS = range(1, int(SCHEMA_VERSION) + 1)
SCHEMAS = {str(v): pa.schema([f for f, since in _FIELDS if since <= v]) for v in _VERSIONS}
SCHEMA = SCHEMAS[SCHEMA_VERSION]
SCHEMA_V1, SCHEMA_V2, SCHEMA_V4 = SCHEMAS["1"], SCHEMAS["2"], SCHEMAS["4"]
COLUMNS = tuple(SCHEMA.names)
ADDED_IN_2, ADDED_IN_3, ADDED_IN_5 = (
    tuple(f.name for f, since in _FIELDS if since == v) for v in (2, 3, 5)
)

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
    return dict(_versions())


@functools.cache  # read once a process: a few ms of package metadata, every shard otherwise
def _versions() -> dict[str, str]:
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
        layout.META_SCHEMA_VERSION: SCHEMA_VERSION,
        layout.META_PARAMETERS: json.dumps(dict(parameters), sort_keys=True),
        layout.META_VERSIONS: json.dumps(package_versions(), sort_keys=True),
        layout.META_RUN_ID: run_id,
        layout.META_SHARD: shard,
        layout.META_WRITER: writer,
        layout.META_PROVENANCE: json.dumps(provenance(), sort_keys=True),
    }


def schema_problem(schema: pa.Schema, version: str | None = SCHEMA_VERSION) -> str | None:
    """Say why a file's Arrow schema is no results schema of `version` (None: any); else None."""
    found = (schema.metadata or {}).get(layout.META_SCHEMA_VERSION)
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

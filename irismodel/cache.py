"""A cache of trained configurations as plain JSON files: loading one can never run code."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs

import irismodel
from irismodel import storage
from irismodel.engine import TrainingRun

CACHE_FOLDER = ".cache"
CACHE_FORMAT = "iris-sweep-training-run/1"


def code_version() -> str:
    """Return a hash of the library's training code: a change to it invalidates the cache."""
    digest = hashlib.sha256()
    package = Path(irismodel.__file__).parent
    for name in ("model.py", "optimizers.py", "engine.py", "data.py", "native/train_loop.cpp"):
        digest.update((package / name).read_bytes())
    return digest.hexdigest()[:16]


def cache_key(parts: Mapping[str, Any]) -> str:
    """Return the cache key of a training: a SHA-256 over its inputs, the data and the code."""
    blob = json.dumps({**parts, "code": code_version()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def cache_location(output_dir: str) -> str:
    """Return the cache folder of an output location (hidden, so result readers skip it)."""
    return storage.join(output_dir, CACHE_FOLDER)


def _encode(run: TrainingRun, extra: Mapping[str, Any]) -> bytes:
    record = {
        "format": CACHE_FORMAT,
        "hidden_dim": run.hidden_dim,
        "optimizer": run.optimizer,
        "seeds": list(run.seeds),
        "learning_rate": run.learning_rate,
        "epochs": run.epochs,
        "device": run.device,
        "engine": run.engine,
        "train_seconds": run.train_seconds,
        # float32 -> Python float is exact, and json writes floats so they read back equal
        "loss_curves": run.loss_curves.astype(np.float64).tolist(),
        "parameters": {
            name: {"shape": list(v.shape), "values": v.astype(np.float64).ravel().tolist()}
            for name, v in run.parameters.items()
        },
        "extra": dict(extra),
    }
    return json.dumps(record, allow_nan=True).encode()


def _decode(blob: bytes) -> tuple[TrainingRun, dict[str, Any]]:
    record = json.loads(blob)
    if record.get("format") != CACHE_FORMAT:
        raise ValueError("not an iris-sweep cache record")
    epochs = int(record["epochs"])
    curves = np.asarray(record["loss_curves"], dtype=np.float32).reshape(
        len(record["seeds"]), epochs
    )
    parameters = {
        name: np.asarray(p["values"], dtype=np.float32).reshape(p["shape"])
        for name, p in record["parameters"].items()
    }
    run = TrainingRun(
        hidden_dim=int(record["hidden_dim"]),
        optimizer=str(record["optimizer"]),
        seeds=[int(s) for s in record["seeds"]],
        learning_rate=float(record["learning_rate"]),
        epochs=epochs,
        device=str(record["device"]),
        engine=str(record["engine"]),
        loss_curves=curves,
        parameters=parameters,
        train_seconds=float(record["train_seconds"]),
    )
    return run, dict(record.get("extra", {}))


def load(location: str, key: str) -> tuple[TrainingRun, dict[str, Any]] | None:
    """Return the cached run under `key` and its extra fields, or None if absent or unreadable."""
    fs, path = storage.resolve(location)
    target = storage.join(path, f"{key}.json")
    if fs.get_file_info(target).type != pafs.FileType.File:
        return None
    try:
        with fs.open_input_stream(target) as stream:
            return _decode(stream.read())
    except (ValueError, KeyError, TypeError, OSError):
        # A damaged entry is a miss: remove it, so that the retrained configuration replaces it.
        with contextlib.suppress(OSError):
            fs.delete_file(target)
        return None


def store(location: str, key: str, run: TrainingRun, extra: Mapping[str, Any]) -> None:
    """Store `run` under `key`, atomically; an entry already there is kept."""
    blob = _encode(run, extra)
    # FileExistsError: another run cached the same training meanwhile; same key, same content
    with contextlib.suppress(FileExistsError):
        storage.write_atomically(location, f"{key}.json", lambda stream: stream.write(blob))

"""A cache of trained configurations as plain JSON files: loading one can never run code."""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs

import irismodel
from irismodel import native, storage
from irismodel.engine import TrainingRun

CACHE_FOLDER = ".cache"
CACHE_FORMAT = "iris-sweep-training-run/2"


@functools.cache
def code_version() -> str:
    """Return a hash of the library's training code: a change to it invalidates the cache."""
    digest = hashlib.sha256()
    package = Path(irismodel.__file__).parent
    for name in ("model.py", "optimizers.py", "engine.py", "data.py"):
        digest.update((package / name).read_bytes())
    for path in (*native.SOURCES, *native.HEADERS):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cache_key(parts: Mapping[str, Any]) -> str:
    """Return the cache key of a training: a SHA-256 over its inputs, the data and the code."""
    blob = json.dumps({**parts, "code": code_version()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def cache_location(output_dir: str) -> str:
    """Return the cache folder of an output location (hidden, so result readers skip it)."""
    return storage.join(output_dir, CACHE_FOLDER)


def _pack(values: np.ndarray) -> dict[str, Any]:
    # float32 bytes, little-endian, base64: exact, and ~50x faster to write than a list of
    # floats in JSON (which cost as much as the training itself)
    array = np.ascontiguousarray(values, dtype="<f4")
    return {"shape": list(array.shape), "float32_base64": base64.b64encode(array).decode()}


def _unpack(packed: Mapping[str, Any]) -> np.ndarray:
    raw = base64.b64decode(packed["float32_base64"], validate=True)
    shape = [int(n) for n in packed["shape"]]
    values = np.frombuffer(raw, dtype="<f4").astype(np.float32)  # copy: writable, native order
    return values.reshape(shape)  # ValueError when the byte count does not fit the shape


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
        "loss_curves": _pack(run.loss_curves),
        "parameters": {name: _pack(v) for name, v in run.parameters.items()},
        "extra": dict(extra),
    }
    return json.dumps(record, allow_nan=True).encode()


def _decode(blob: bytes) -> tuple[TrainingRun, dict[str, Any]]:
    record = json.loads(blob)
    if record.get("format") != CACHE_FORMAT:
        raise ValueError("not an iris-sweep cache record")
    epochs = int(record["epochs"])
    curves = _unpack(record["loss_curves"]).reshape(len(record["seeds"]), epochs)
    parameters = {name: _unpack(p) for name, p in record["parameters"].items()}
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
            blob = stream.read()
    except OSError:  # unreadable now (a storage hiccup): a miss, but the entry may be fine
        return None
    try:
        return _decode(blob)
    except (ValueError, KeyError, TypeError):  # binascii.Error is a ValueError
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

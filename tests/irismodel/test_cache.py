"""The training cache: plain JSON that reads back bit for bit, keyed by data, parameters, code."""

from __future__ import annotations

import json

import numpy as np

from irismodel import cache
from irismodel.data import load_dataset, split_dataset
from irismodel.engine import train_batched


def _run(epochs=20):
    split = split_dataset(load_dataset())
    return train_batched(split.x_train, split.y_train, 8, "adam", [0, 1, 2], 0.1, epochs)


def test_round_trip_is_bit_identical(tmp_path):
    """A stored run loads back with equal loss curves and parameters, bit for bit."""
    run = _run()
    cache.store(str(tmp_path), "k", run, {"worker": "host:1"})
    loaded, extra = cache.load(str(tmp_path), "k")
    np.testing.assert_array_equal(loaded.loss_curves, run.loss_curves)
    assert loaded.loss_curves.dtype == np.float32
    for name, values in run.parameters.items():
        np.testing.assert_array_equal(loaded.parameters[name], values)
    assert (loaded.hidden_dim, loaded.optimizer, loaded.seeds) == (8, "adam", [0, 1, 2])
    assert extra == {"worker": "host:1"}


def test_entries_are_plain_json(tmp_path):
    """Every cache entry is a JSON document, so loading it can never run code."""
    cache.store(str(tmp_path), "k", _run(5), {})
    (entry,) = tmp_path.iterdir()
    assert entry.name == "k.json"
    assert json.loads(entry.read_text())["format"] == cache.CACHE_FORMAT


def test_damaged_entry_is_a_miss(tmp_path):
    """A damaged or foreign entry reads as absent, so the configuration is trained again."""
    (tmp_path / "k.json").write_bytes(b"\x80\x04not json")
    assert cache.load(str(tmp_path), "k") is None
    (tmp_path / "j.json").write_text('{"format": "something else"}')
    assert cache.load(str(tmp_path), "j") is None
    assert cache.load(str(tmp_path), "absent") is None
    # a valid entry whose arrays were cut short, or are not base64 at all
    cache.store(str(tmp_path), "cut", _run(5), {})
    record = json.loads((tmp_path / "cut.json").read_text())
    packed = record["loss_curves"]["float32_base64"]
    for damaged in (packed[: len(packed) // 2 // 4 * 4], "*not base64*"):
        record["loss_curves"]["float32_base64"] = damaged
        (tmp_path / "cut.json").write_text(json.dumps(record))
        assert cache.load(str(tmp_path), "cut") is None
        assert not (tmp_path / "cut.json").exists()  # removed, to be replaced by a retraining


def test_key_changes_with_every_input():
    """The key differs when any input differs and is stable when none does."""
    base = {"hidden_dim": 8, "optimizer": "sgd", "seeds": [0, 1], "training_data": "abc"}
    assert cache.cache_key(base) == cache.cache_key(dict(base))
    for change in ({"hidden_dim": 9}, {"seeds": [0, 2]}, {"training_data": "abd"}):
        assert cache.cache_key({**base, **change}) != cache.cache_key(base)


def test_existing_entry_is_kept(tmp_path):
    """Storing a key twice keeps the first entry and raises nothing (concurrent runs race here)."""
    first, second = _run(5), _run(6)
    cache.store(str(tmp_path), "k", first, {})
    cache.store(str(tmp_path), "k", second, {})
    assert cache.load(str(tmp_path), "k")[0].epochs == 5

"""The forecast of a sweep: sizes add up, and what cannot fit this machine is refused up front."""

import pytest

from irismodel import store, sweep
from irismodel.data import load_dataset, split_dataset
from irismodel.estimate import (
    BYTES_PER_PART,
    BYTES_PER_VALUE,
    _available_memory,
    check_fits,
    estimate,
    forecast,
)
from irismodel.parameters import SweepConfig
from irismodel.store.lock import release_lock


def test_forecast_counts_models_and_bytes(tmp_path):
    """Models, model-epochs and bytes follow from the parameters; more cores, less time."""
    config = SweepConfig(hidden_dims=[8, 9], optimizers=["sgd", "adam"], split_seeds="0",
                         seeds="0..99", epochs=500, output_dir=str(tmp_path))  # fmt: skip
    one, two = estimate(config, workers=1), estimate(config, workers=2)
    assert one.models == 400 and one.model_epochs == 200_000
    assert one.disk_bytes >= 400 * 500 * BYTES_PER_VALUE
    training = dict(one.parts)["training"]
    assert dict(two.parts)["training"] == pytest.approx(training / 2)
    assert one.seconds == pytest.approx(sum(seconds for _, seconds in one.parts))
    assert "400 models, 200,000 model-epochs" in one.text()
    check_fits(config, one)  # a small sweep fits


def test_a_sweep_larger_than_the_free_disk_is_refused_unless_forced(tmp_path):
    """Terabytes of loss curves do not fit this disk: refused, naming output_dir; force skips."""
    config = SweepConfig(hidden_dims=list(range(8, 15)), split_seeds="0", seeds="0..999999",
                         epochs=100_000, shard_size=5000, output_dir=str(tmp_path))  # fmt: skip
    with pytest.raises(
        ValueError,
        match=r"output_dir: this sweep writes about [0-9.]+ GiB .*free; "
        r"free some space, sweep less, or pass force=true",
    ):
        check_fits(config, estimate(config))
    check_fits(config, estimate(config), force=True)
    assert list(tmp_path.iterdir()) == []


def test_shards_larger_than_the_memory_are_refused(tmp_path):
    """Shards of 100,000 seeds on every core, long enough to need twice the memory there is."""
    available = _available_memory()
    assert available is not None
    epochs = min(1_000_000, 2 * available // (100_000 * 4 * 4) + 1)
    config = SweepConfig(
        hidden_dims=[8], optimizers=["sgd"], split_seeds="0", seeds="0..99999", epochs=epochs,
        shard_size=100_000, output_dir=str(tmp_path),
    )  # fmt: skip
    forecast = estimate(config)
    assert forecast.disk_bytes < forecast.peak_bytes  # the disk is not what refuses it
    message = rf"shard_size: 100000 seeds x {epochs} epochs a shard need about .* GiB on"
    with pytest.raises(ValueError, match=message + r" \d+ workers, and .* GiB are available"):
        check_fits(config, forecast)


def test_the_forecast_counts_what_the_run_does_besides_training(tmp_path):
    """A first-use compile, the command's start, a temporary server and the report add time."""
    config = SweepConfig(hidden_dims=[8], optimizers=["sgd"], seeds="0..9", epochs=10,
                         output_dir=str(tmp_path))  # fmt: skip
    bare = estimate(config)
    full = estimate(config, compile_first=True, starting=True, temporary_server=True)
    parts = dict(full.parts)
    added = parts["first-use compile"] + parts["start"] + parts["temporary server"]
    assert full.seconds == pytest.approx(bare.seconds + added)
    assert "first-use compile" in full.text() and "temporary server" in full.text()
    no_report = estimate(SweepConfig(**{**config.parameters(), "report": False}))
    assert no_report.seconds < bare.seconds and dict(no_report.parts)["report"] == 0


def test_memory_grows_with_hidden_dim_and_disk_with_the_part_files(tmp_path):
    """Wider layers need more memory a shard; each part file adds its own overhead on disk."""
    small, wide = (
        estimate(
            SweepConfig(hidden_dims=[h], seeds="0..1999", epochs=10, output_dir=str(tmp_path))
        )  # fmt: skip
        for h in (8, 4096)
    )
    assert wide.peak_bytes - small.peak_bytes > 2 * 2000 * (4096 - 8) * 100  # > 6 GB on 2 cores
    one_part = estimate(
        SweepConfig(seeds="0..99", split_seeds="0", output_dir=str(tmp_path), shard_size=100)
    )
    many = estimate(
        SweepConfig(seeds="0..99", split_seeds="0", output_dir=str(tmp_path), shard_size=1)
    )
    assert many.disk_bytes - one_part.disk_bytes == (100 - 1) * 21 * BYTES_PER_PART


def test_a_resume_forecasts_only_its_missing_shards_and_force_is_the_resume_s(tmp_path):
    """Resuming a run with 2 of 8 shards written forecasts 6 shards; --force there means force."""
    config = SweepConfig(hidden_dims=[8, 11], optimizers=["sgd", "adam"], seeds="0..5",
                             split_seeds="0", epochs=20, shard_size=3,
                             output_dir=str(tmp_path))  # fmt: skip
    opened = store.open_run(config, "killed")
    splits = {0: split_dataset(load_dataset())}
    shards = store.plan_shards(config)
    for shard in shards[:2]:
        sweep.run_shard(splits, shard, sweep.context_of(opened, config))
    release_lock(opened.place)

    given = SweepConfig(output_dir=str(tmp_path), resume="killed", force=True)
    resumed = store.resumed_config(given)
    assert resumed.force  # the stored run said false
    whole, left = estimate(resumed), forecast(resumed)
    assert (whole.models, left.models) == (24, 24 - 2 * 3)
    assert left.disk_bytes < whole.disk_bytes

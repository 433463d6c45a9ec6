"""The forecast of a sweep: sizes add up, and what cannot fit this machine is refused up front."""

from __future__ import annotations

import pytest

from irismodel.config import validate_config
from irismodel.estimate import BYTES_PER_VALUE, _available_memory, check_fits, estimate


def test_forecast_counts_models_and_bytes(tmp_path):
    """Models, model-epochs and bytes follow from the parameters; more cores, less time."""
    config = validate_config(hidden_dims=[8, 9], optimizers=["sgd", "adam"], split_seeds="0",
                             seeds="0..99", epochs=500, output_dir=str(tmp_path))  # fmt: skip
    one, two = estimate(config, workers=1), estimate(config, workers=2)
    assert one.models == 400 and one.model_epochs == 200_000
    assert one.disk_bytes >= 400 * 500 * BYTES_PER_VALUE
    assert two.seconds == pytest.approx(one.seconds / 2)
    assert "400 models, 200,000 model-epochs" in one.text()
    check_fits(config, one)  # a small sweep fits


def test_a_sweep_larger_than_the_free_disk_is_refused_unless_forced(tmp_path):
    """Terabytes of loss curves do not fit this disk: refused, naming output_dir; force skips."""
    config = validate_config(hidden_dims=list(range(8, 15)), split_seeds="0", seeds="0..999999",
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
    config = validate_config(
        hidden_dims=[8], optimizers=["sgd"], split_seeds="0", seeds="0..99999", epochs=epochs,
        shard_size=100_000, output_dir=str(tmp_path),
    )  # fmt: skip
    forecast = estimate(config)
    assert forecast.disk_bytes < forecast.peak_bytes  # the disk is not what refuses it
    message = rf"shard_size: 100000 seeds x {epochs} epochs a shard need about .* GiB on"
    with pytest.raises(ValueError, match=message + r" \d+ workers, and .* GiB are available"):
        check_fits(config, forecast)

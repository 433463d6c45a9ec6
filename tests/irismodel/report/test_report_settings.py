"""The report's settings: the epoch is checked, settings are never pooled, optimizers ordered."""

import numpy as np
import pytest
from report_runs import BLOWN, MAIN, rows_of

from irismodel.report.settings import (
    OPTIMIZER_ORDER,
    ReportError,
    check_epoch,
    optimizer_order,
    settings_of,
)


@pytest.mark.parametrize("epoch", [0, -1, 1.5, True, "100"])
def test_an_epoch_must_be_a_positive_integer(epoch):
    """Epoch 0 is not an epoch (epochs are 1-based), nor is anything but a positive integer."""
    with pytest.raises(ReportError, match="epoch: .* is not allowed; it must be a positive"):
        check_epoch(epoch)
    assert check_epoch(np.int64(100)) == 100


def test_rows_of_two_settings_are_split_and_one_setting_is_not_copied(frame):
    """Rows that differ in a setting (here the learning rate) are two groups; one setting is
    the frame itself."""
    rows = frame[frame.flow_run_id.isin([MAIN, BLOWN])]
    groups = settings_of(rows)
    assert [setting["learning_rate"] for setting, _ in groups] == [0.1, 100.0]
    assert sum(len(part) for _, part in groups) == len(rows)
    main = rows_of(frame, MAIN)
    assert settings_of(main)[0][1] is main


def test_display_order_names_every_registered_optimizer():
    """The report's optimizer order names exactly the registry's optimizers, the rest after."""
    from irismodel.optimizers import OPTIMIZERS

    assert set(OPTIMIZER_ORDER) == set(OPTIMIZERS)
    assert optimizer_order(["zeta", "adam", "sgd", "alpha"]) == ["sgd", "adam", "alpha", "zeta"]

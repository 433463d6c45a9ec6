"""The summary per configuration: outcomes with Wilson rates, intervals in range, two tables."""

import numpy as np
import pandas as pd
import pytest
from report_runs import BLOWN, MAIN, NAN, NOT_HELD_OUT, rows_of
from scipy import stats

from irismodel import report


@pytest.fixture(scope="module")
def summary(frame):
    return report.summarize(frame)


def test_stalled_and_blown_up_models_are_classified_and_counted_with_wilson_intervals(
    frame, summary
):
    """Blown-up (lr 100) and NaN models count as diverged, plateaus as stalled, each rate with
    scipy's Wilson interval; every model enters the accuracy mean, a non-finite loss does not."""
    for run_id in (BLOWN, NAN):
        row = summary[summary.learning_rate == rows_of(frame, run_id).learning_rate[0]].iloc[0]
        assert (row.n_diverged, row.n_converged, row.n_stalled) == (3, 0, 0)
        ci = stats.binomtest(3, 3).proportion_ci(method="wilson")
        assert (row.diverged_rate, row.diverged_low, row.diverged_high) == pytest.approx(
            (1.0, ci.low, ci.high)
        )
        mine = rows_of(frame, run_id)
        assert row.test_accuracy_mean == pytest.approx(mine.test_accuracy.mean())
        finite = mine.final_train_loss[np.isfinite(mine.final_train_loss)]
        assert row.final_loss_mean == pytest.approx(finite.mean()) or finite.empty
    main = rows_of(frame, MAIN)
    for row in summary[(summary.learning_rate == 0.1) & (summary.test_size > 0)].itertuples():
        mine = main[(main.hidden_dim == row.hidden_dim) & (main.optimizer == row.optimizer)]
        stalled = int((mine.outcome == "stalled").sum())
        assert row.n_stalled == stalled and row.n_seeds == len(mine)
        assert row.n_converged + row.n_stalled + row.n_oscillating + row.n_diverged == len(mine)
        ci = stats.binomtest(stalled, len(mine)).proportion_ci(method="wilson")
        assert (row.stalled_low, row.stalled_high) == pytest.approx((ci.low, ci.high))
    assert (main.outcome == "stalled").any(), "120 epochs leave some plateaus: the case is real"
    notes = " ".join(report.answer_questions(frame).notes)
    assert "6 of" in notes and "diverged" in notes


def test_every_reported_interval_of_a_real_run_is_inside_its_bounds(summary):
    """Accuracy intervals in [0, 1], loss intervals >= 0, in the summary and its table."""
    bounds = {"test_accuracy": (0, 1), "train_accuracy": (0, 1), "loss_at_epoch": (0, np.inf),
              "final_loss": (0, np.inf)}  # fmt: skip
    for name, (low_bound, high_bound) in bounds.items():
        known = summary[summary[f"{name}_low"].notna()]
        assert len(known)
        assert (known[f"{name}_low"] >= low_bound).all()
        assert (known[f"{name}_high"] <= high_bound).all()
        assert (known[f"{name}_low"] <= known[f"{name}_mean"] + 1e-12).all()
    table = report.summary_table(summary)
    assert pd.api.types.is_float_dtype(table["test acc mean"])  # numbers, so the UI sorts them
    assert {"test acc low", "test acc high", "stalled rate", "stalled low"} <= set(table.columns)


def test_the_text_table_names_a_training_accuracy_that_is_not_held_out(frame, summary):
    """With test_size=0 the text table shows the training accuracy under a column saying so;
    beside held-out rows, such a value is marked `(train)`; settings that vary get columns."""
    alone = report.summary_text_table(report.summarize(rows_of(frame, NOT_HELD_OUT)))
    assert "train acc (not held out) median" in alone.columns
    assert not alone["train acc (not held out) median"].eq("n/a").any()
    assert "learning_rate" not in alone.columns
    mixed = report.summary_text_table(summary)
    assert {"learning_rate", "test_size", "test acc median"} <= set(mixed.columns)
    train = mixed[mixed.test_size == "0"]
    assert len(train) and train["test acc median"].str.endswith(" (train)").all()

"""The report's intervals stay in range, are reproducible, and say when there is none."""

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats

from irismodel.report.statistics import (
    block_matrix,
    crossed_interval,
    crossed_intervals,
    rate_interval,
)


@pytest.mark.parametrize(
    ("values", "bounds"),
    [
        ([1.0, 1.0, 1.0, 1.0], (0.0, 1.0)),  # all equal, at the bound
        ([1.0, 1.0, 1.0, 1.0, 0.97, 1.0, 1.0, 1.0], (0.0, 1.0)),  # near 1
        ([0.0, 0.0, 0.0, 0.02, 0.0, 0.001], (0.0, math.inf)),  # a loss near 0
        (list(np.random.default_rng(0).choice([0.97, 1.0], 5000, p=[0.02, 0.98])), (0.0, 1.0)),
        (list(np.random.default_rng(1).exponential(0.01, 3000)), (0.0, math.inf)),
    ],
)
def test_every_interval_lies_inside_its_quantitys_range(values, bounds):
    """Bootstrap intervals stay within bounds where a t-interval would not, contain the mean,
    and are the same every time (fixed random state)."""
    interval = crossed_interval([values], bounds)
    assert bounds[0] <= interval.low <= interval.mean <= interval.high <= bounds[1]
    assert crossed_interval([values], bounds) == interval
    if len(set(values)) == 1:
        assert (interval.low, interval.high, interval.method) == (1.0, 1.0, "all equal")


def test_a_t_interval_would_leave_the_range_where_the_bootstrap_does_not():
    """The reviewed case: a t-interval of near-1 accuracies passes 1; the report's does not."""
    values = np.array([1.0, 1.0, 0.9, 1.0])
    high = stats.t.interval(0.95, 3, values.mean(), stats.sem(values))[1]
    assert high > 1.0 and crossed_interval([values], (0.0, 1.0)).high <= 1.0


def test_one_seed_gives_no_interval():
    """With one seed the mean is kept and there is no interval, said in words."""
    interval = crossed_interval([[0.5, math.nan]])
    assert (interval.n, interval.mean, interval.method) == (1, 0.5, "one seed")
    assert math.isnan(interval.low) and math.isnan(interval.high)
    assert crossed_interval(np.empty((0, 0))).method == "no seeds"


def test_an_interval_over_splits_and_seeds_says_so():
    """Seeds crossed with splits: the interval counts both and names them; NaN cells (a seed
    missing on a split) are skipped, not zero."""
    splits, seeds = np.repeat([7, 8], 5), np.tile(np.arange(5), 2)
    values = np.where(splits == 7, 0.9, 0.7) + 0.01 * seeds
    values[3] = math.nan
    cells = block_matrix(splits, seeds, values)[2]
    assert cells.shape == (2, 5) and np.isnan(cells[0, 3])
    interval = crossed_interval(cells, (0.0, 1.0))
    assert (interval.n, interval.n_splits) == (5, 2)
    assert interval.covers() == "over 5 seeds x 2 splits"
    assert interval.mean == pytest.approx(np.nanmean(values))
    assert interval.low <= 0.75 and interval.high >= 0.85  # the split effect is in it


def test_a_rate_has_scipys_wilson_interval():
    """Rates are the share with scipy's Wilson 95% interval; no models, no rate."""
    ci = stats.binomtest(3, 10).proportion_ci(method="wilson")
    assert rate_interval(3, 10) == pytest.approx((0.3, ci.low, ci.high))
    assert all(math.isnan(v) for v in rate_interval(0, 0))


@pytest.mark.parametrize("statistic", ["mean", "median"])
def test_intervals_drawn_together_equal_each_drawn_alone(statistic):
    """Many intervals at once (the resamples of each shape drawn once) are each, bit for bit,
    the interval drawn alone: whatever their shapes, NaN cells, bounds and special cases."""
    rng = np.random.default_rng(5)
    base = rng.normal(size=(2, 40))
    matrices = [
        base,
        base * 3 + 1,  # the same shape: the same resamples, other values
        np.where(rng.random((2, 40)) < 0.1, math.nan, base),  # NaN cells, the same shape
        rng.normal(size=(1, 40)),  # other shapes: resamples of their own
        rng.normal(size=(2, 39)),
        np.vstack([base[0], np.full(40, math.nan)]),  # an empty split is dropped: 1 x 40
        np.full((2, 40), 0.5),  # all equal
        [[0.3, math.nan]],  # one seed
        np.empty((0, 0)),  # none
    ]
    bounds = [(-math.inf, math.inf), (0.0, 2.0), (-0.1, 0.1), *[(-1.0, 1.0)] * 6]
    together = crossed_intervals(matrices, bounds, statistic)
    alone = [crossed_interval(m, b, statistic) for m, b in zip(matrices, bounds, strict=True)]
    assert len(together) == len(matrices)
    np.testing.assert_equal(
        [dataclasses.astuple(i) for i in together], [dataclasses.astuple(i) for i in alone]
    )
    assert together[0].low != together[1].low and together[3].n == 40  # not one result repeated

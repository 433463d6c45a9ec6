"""Per-epoch aggregates of the curves and per-model losses kept while streaming: as numpy says."""

import numpy as np
from report_runs import SYNTHETIC_EPOCHS, curves_of

from irismodel.report.curves import grid
from irismodel.report.scan import scan

KEYS = ["hidden_dim", "optimizer", "split_seed", "seed"]


def test_the_plotted_curves_match_numpy(synthetic, synthetic_report):
    """Per configuration and epoch, the plotted count, mean, least and largest loss equal
    numpy's over the models that did not diverge; the percentiles are close."""
    _, kept = synthetic
    scalars = kept.drop_columns(["loss_curve"]).to_pandas()
    curves = curves_of(kept).astype(np.float64)
    plotted = synthetic_report.curves
    for row in synthetic_report.summary.itertuples():
        mine = (scalars.hidden_dim == row.hidden_dim) & (scalars.optimizer == row.optimizer)
        ok = (mine & ~scalars.diverged).to_numpy()
        drawn = plotted[
            (plotted.hidden_dim == row.hidden_dim) & (plotted.optimizer == row.optimizer)
        ]
        assert list(drawn.epoch) == list(range(1, SYNTHETIC_EPOCHS + 1))
        assert (drawn.n == ok.sum()).all()
        np.testing.assert_allclose(drawn["mean"], curves[ok].mean(axis=0), rtol=1e-9)
        np.testing.assert_array_equal(drawn["least"], curves[ok].min(axis=0))
        np.testing.assert_array_equal(drawn["largest"], curves[ok].max(axis=0))
        low, median, high = np.quantile(curves[ok], [0.1, 0.5, 0.9], axis=0)
        # percentiles come from log-spaced histograms, 9% wide bins: close, not exact
        np.testing.assert_allclose(drawn["median"], median, rtol=0.03)
        np.testing.assert_allclose(drawn["q10"], low, rtol=0.05)
        np.testing.assert_allclose(drawn["q90"], high, rtol=0.05)


def test_the_drawn_epochs_are_few_and_include_the_epoch_of_interest():
    """Long curves are drawn through at most ~200 epochs: the first, the last and epoch 100."""
    drawn = grid(100_000, 100) + 1
    assert len(drawn) <= 202 and {1, 100, 100_000} <= set(drawn.tolist())
    assert (np.diff(drawn) > 0).all()
    assert list(grid(150, 100) + 1) == list(range(1, 151))


def test_first_epoch_below_the_baseline_equals_a_direct_computation(two_splits):
    """Each model's first epoch below the linear baseline is the first curve value below it,
    0 for a model that never gets there."""
    _, frame = two_splits
    direct = []
    for curve, baseline in zip(frame["loss_curve"], frame["baseline_loss"], strict=True):
        below = np.flatnonzero(np.asarray(curve, dtype=np.float64) < float(baseline))
        direct.append(int(below[0]) + 1 if below.size else 0)
    models = scan(frame, 100).models[[*KEYS, "_first_below"]].astype({"optimizer": str})
    merged = models.merge(
        frame[KEYS].assign(direct=direct).astype({"optimizer": str}), on=KEYS,
        validate="one_to_one",
    )  # fmt: skip
    assert len(merged) == len(frame)
    assert (merged["_first_below"].to_numpy() == merged["direct"].to_numpy()).all()
    # the run holds both kinds, so the censored path is exercised
    assert 0 < (merged["direct"] == 0).sum() < len(merged)

"""The numbers behind both answers and the secondary summaries, right on small real runs."""

from typing import Any

import numpy as np
import pandas as pd
import pytest
from report_runs import EPOCHS, MAIN, NOT_HELD_OUT, real_run, rows_of, with_loss_at
from scipy import stats

from irismodel import report, store
from irismodel.report.answers import answer_numbers
from irismodel.report.scan import scan


def _question2(answers: report.Answers, rule: str) -> dict[str, Any]:
    return next(r for r in answers.numbers["settings"][0]["question2"] if r["optimizer"] == rule)


def test_the_blocked_trend_test_finds_a_fall_the_pooled_test_misses(frame):
    """A strong seed effect and a small fall within every seed: pooled Spearman misses it,
    Page's L test blocked by seed finds it, and the per-seed slope measures it."""
    rows = rows_of(frame, MAIN)
    rows = rows[rows.optimizer == "sgd"].reset_index(drop=True)
    rng = np.random.default_rng(5)
    seed_effect = rng.permutation(np.linspace(0.1, 0.6, 6))[rows.seed.to_numpy()]
    fall = -0.004 * (rows.hidden_dim.to_numpy() - 8)
    loss = seed_effect + fall + rng.uniform(-0.0005, 0.0005, len(rows))
    edited = with_loss_at(rows, 100, loss)
    rho, pooled = stats.spearmanr(edited.hidden_dim, loss)
    assert pooled > 0.05  # the pooled test sees nothing
    answers = report.answer_questions(edited)
    trend = _question2(answers, "sgd")
    assert trend["test"] == "Page's L" and trend["n_blocks"] == 6
    matrix = pd.DataFrame({"h": edited.hidden_dim, "s": edited.seed, "loss": loss}).pivot(
        index="s", columns="h", values="loss"
    )
    matrix = matrix.sort_index(axis=1).to_numpy()  # seeds x hidden_dims, increasing
    expected = stats.page_trend_test(matrix[:, ::-1]).pvalue
    assert trend["p_value"] == pytest.approx(expected) and trend["p_value"] < 0.05
    slope = trend["slope"]
    assert slope["mean"] == pytest.approx(-0.004, abs=5e-4) and slope["high"] < 0
    assert "falls as hidden_dim grows (Page's L test blocked by (split, seed), one-sided" in (
        answers.question2
    )


def test_rules_are_compared_by_seed_not_pooled(frame):
    """manual-no-zero-grad minus sgd: per seed the mean paired difference, then over seeds."""
    answers = report.answer_questions(rows_of(frame, MAIN))
    rows = rows_of(frame, MAIN)
    against = answers.numbers["settings"][0]["question1"]["against_sgd"]["manual-no-zero-grad"]
    ok = rows[rows.outcome != "diverged"]
    pairs = ok[ok.optimizer == "manual-no-zero-grad"].merge(
        ok[ok.optimizer == "sgd"], on=["hidden_dim", "seed"], suffixes=("", "_sgd")
    )
    per_seed = (pairs.test_accuracy - pairs.test_accuracy_sgd).groupby(pairs.seed).mean()
    assert against["accuracy"]["n"] == len(per_seed)
    assert against["accuracy"]["mean"] == pytest.approx(per_seed.mean())
    assert -1 <= against["accuracy"]["low"] <= against["accuracy"]["high"] <= 1


def test_not_held_out_is_said_and_train_accuracy_used(frame):
    """With test_size 0 the answer says the data was not held out and uses train accuracy."""
    rows = rows_of(frame, NOT_HELD_OUT)
    answers = report.answer_questions(rows)
    numbers = answers.numbers["settings"][0]["question1"]
    assert numbers["accuracy_part"] == "train"
    assert "NOT held out" in answers.question1
    nzg = rows[(rows.optimizer == "manual-no-zero-grad") & (rows.outcome != "diverged")]
    assert numbers["rules"]["manual-no-zero-grad"]["accuracy"]["mean"] == pytest.approx(
        nzg.train_accuracy.mean()
    )
    assert "never resets its gradients" in answers.question1


def test_held_out_accuracy_is_used_when_there_is_a_test_split(frame):
    """With a test split, question 1 reports test accuracy, labelled held-out."""
    answers = report.answer_questions(rows_of(frame, MAIN))
    assert answers.numbers["settings"][0]["question1"]["accuracy_part"] == "test"
    assert "Held-out accuracy" in answers.question1


def test_a_model_that_diverges_after_epoch_100_is_still_counted_at_epoch_100(frame):
    """Question 2 leaves a model out only where its own loss at the epoch is not finite: one
    that blows up after epoch 100 (its outcome diverged) still counts, one NaN at 100 does not."""
    rows = rows_of(frame, MAIN)
    nzg = (rows.optimizer == "manual-no-zero-grad").to_numpy()
    later = nzg & (rows.hidden_dim == 8).to_numpy() & (rows.seed == 0).to_numpy()
    curves = [np.array(c, np.float32) for c in rows.loss_curve]
    for i in np.flatnonzero(later):
        curves[i][100:] = np.inf  # finite through epoch 100, then overflows
    edited = rows.assign(loss_curve=curves)
    edited.loc[later, "outcome"] = "diverged"
    edited.loc[later, "diverged"] = True
    trend = _question2(report.answer_questions(edited), "manual-no-zero-grad")
    assert trend["n_left_out"] == 0 and trend["n_blocks"] == 6  # every seed still a block
    at_100 = nzg & (rows.hidden_dim == 9).to_numpy() & (rows.seed == 1).to_numpy()
    loss = np.where(at_100, np.nan, [c[99] for c in edited.loss_curve])
    answers = report.answer_questions(with_loss_at(edited, 100, loss))
    trend = _question2(answers, "manual-no-zero-grad")
    assert trend["n_left_out"] == 1 and trend["n_blocks"] == 5
    assert "1 model left out: not finite at epoch 100" in answers.question2


def test_a_split_effect_one_split_misses_is_covered_over_seeds_and_splits(tmp_path):
    """Two real splits whose test accuracy differs: the interval over one split's seeds misses
    the other split's mean; the interval over seeds x splits covers both, and says so."""
    path, _ = real_run(tmp_path, "splits", 0, hidden_dims=[8], optimizers=["sgd"],
                       seeds="0..9", split_seeds="7, 8", epochs=300, standardize=True,
                       reference_seeds=0)  # fmt: skip
    frame = store.read_results(path)
    means = frame.groupby("split_seed").test_accuracy.mean()
    assert means[7] - means[8] > 0.05  # a real split effect: 38 test rows each, other rows

    def accuracy(rows: pd.DataFrame) -> tuple[dict[str, Any], str]:
        answers = report.answer_questions(rows)
        return answers.numbers["settings"][0]["question1"]["rules"]["sgd"]["accuracy"], (
            answers.question1
        )

    one, _ = accuracy(frame[frame.split_seed == 7])
    assert one["covers"] == "over 10 seeds, one data split"
    assert one["low"] > means[8]  # one split's interval misses the other split
    both, words = accuracy(frame)
    assert both["covers"] == "over 10 seeds x 2 splits" and "over 10 seeds x 2 splits" in words
    assert both["low"] <= means[8] and both["high"] >= means[7]


@pytest.fixture(scope="module")
def secondary(two_splits):
    """The secondary summaries of the two-split run, and the run's first epochs below the
    baseline computed directly (0 for none)."""
    _, frame = two_splits
    direct = []
    for curve, baseline in zip(frame["loss_curve"], frame["baseline_loss"], strict=True):
        below = np.flatnonzero(np.asarray(curve, dtype=np.float64) < float(baseline))
        direct.append(int(below[0]) + 1 if below.size else 0)
    return answer_numbers(scan(frame, 100))["settings"][0], frame.assign(direct=direct)


def test_models_that_never_beat_the_baseline_are_counted_censored_not_dropped(secondary):
    """Censored models are counted, ranked last in the medians and kept in every test block."""
    setting, direct = secondary
    for rule in setting["secondary"]["rules"]:
        mine = direct[direct["optimizer"].astype(str) == rule["optimizer"]]
        beat = rule["first_beating"]
        assert beat["n_censored"] == int((mine["direct"] == 0).sum()) > 0
        for entry in beat["per_dim"]:
            values = mine.loc[mine["hidden_dim"] == entry["hidden_dim"], "direct"].to_numpy()
            ranked = np.where(values == 0, np.inf, values)
            assert entry["n"] == len(values)
            assert entry["n_beat"] == int((values > 0).sum())
            assert entry["median"] == np.median(ranked)
        # every (split, seed) block is tested: none left out for being censored
        assert beat["trend"]["n_blocks"] == mine.groupby(["split_seed", "seed"]).ngroups


def test_slope_by_epoch_at_epoch_100_equals_question_2s_mean_per_block_slope(secondary):
    """The slope curve at epoch 100 is question 2's mean per-block slope and its interval."""
    setting, _ = secondary
    for rule, q2 in zip(setting["secondary"]["rules"], setting["question2"], strict=True):
        assert rule["optimizer"] == q2["optimizer"]
        curve = rule["slope_by_epoch"]
        at = curve["epoch"].index(100)
        assert curve["n_blocks"][at] == q2["n_blocks"]
        for key in ("mean", "low", "high"):
            assert curve[key][at] == pytest.approx(q2["slope"][key], rel=1e-9, abs=1e-12)
        # epochs before and after 100 are evaluated too, log-spaced up to the last
        assert curve["epoch"][0] == 1 and curve["epoch"][-1] == EPOCHS

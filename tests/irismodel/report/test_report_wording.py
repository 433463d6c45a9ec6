"""The answers in words: what a test can and cannot say, numbers as they are, plain terms."""

import math
from typing import Any

import numpy as np
from report_runs import MAIN, NOT_HELD_OUT, rows_of, with_loss_at

from irismodel import report
from irismodel.report.text import plain
from irismodel.report.wording import question2_words


def test_no_evidence_is_not_called_no_trend(frame):
    """Without a consistent fall the answer says "no evidence ...", that this is not evidence
    of no trend, and which slopes the seeds still allow."""
    rows = rows_of(frame, MAIN)
    rows = rows[rows.optimizer == "sgd"].reset_index(drop=True)
    loss = np.random.default_rng(2).uniform(0.3, 0.5, len(rows))
    answers = report.answer_questions(with_loss_at(rows, 100, loss))
    trend = answers.numbers["settings"][0]["question2"][0]
    assert trend["p_value"] >= 0.05
    assert "no evidence that the loss at epoch 100 falls as hidden_dim grows" in answers.question2
    assert "that is not evidence of no trend" in answers.question2
    assert "mean per-block slope" in answers.question2
    assert "no monotonic trend" not in answers.question2


def _trend_result(p: float, low: float, high: float, blocks: int = 5) -> dict[str, Any]:
    """A question-2 result for one rule, as `answer_numbers` makes it, by hand."""
    slope = {
        "n": blocks, "n_splits": 1, "mean": (low + high) / 2, "median": (low + high) / 2,
        "low": low, "high": high, "method": "bootstrap", "se": (high - low) / 3.92,
        "covers": f"over {blocks} seeds, one data split",
    }  # fmt: skip
    return {
        "optimizer": "sgd", "label": "sgd", "epoch": 100, "dims": [8, 9], "n_seeds": blocks,
        "n_splits": 1, "n_blocks": blocks, "test": "Wilcoxon signed-rank", "p_value": p,
        "slope": slope, "theil_sen": slope, "slope_sd": 0.01,
        "detectable": 2.8 * slope["se"], "half_width": (high - low) / 2,
        "medians": [{"hidden_dim": 8, "median": 0.5, "n_left_out": 0},
                    {"hidden_dim": 9, "median": math.nan, "n_left_out": 1}],
        "n_left_out": 1, "n_models": 2 * blocks,
    }  # fmt: skip


def test_slope_bounds_are_printed_as_they_are_never_clamped_to_zero():
    """A slope interval is printed with its real bounds, above or below zero, with its power."""
    above = question2_words([_trend_result(0.9, 0.1224, 0.3357)], plain)[0]
    assert "[0.1224, 0.3357]" in above and "0.0000" not in above
    assert "not evidence of no trend" in above
    spans = question2_words([_trend_result(0.4, -0.02, 0.01)], plain)[0]
    assert "[-0.0200, 0.0100]" in spans and "half-width is 0.0150" in spans
    assert "80% power" in spans and f"{2.8 * 0.03 / 3.92:.4f}" in spans


def test_nan_medians_read_n_a_and_counts_agree_in_number():
    """A hidden_dim with no median reads n/a, not nan; one model left out is singular."""
    line = question2_words([_trend_result(0.4, -0.02, 0.01)], str)[0]
    assert "nan" not in line and "9: n/a" in line
    assert "1 model left out: not finite at epoch 100" in line and "model(s)" not in line


def test_converged_is_not_called_good_and_not_held_out_accuracy_is_named(frame):
    """The outcome rule says what converged means; with test_size=0 the reference line speaks
    of the training rows, never of test predictions."""
    answers = report.answer_questions(rows_of(frame, NOT_HELD_OUT))
    assert "logistic regression on the same training rows" in answers.question1
    assert "no better than the majority class" in answers.question1
    assert "training-row predictions for" in answers.question1
    assert "equal test predictions" not in answers.question1


def test_the_secondary_summaries_are_worded_a_line_per_rule(two_splits):
    """Beyond the notebook's question: per rule, the first epoch below the linear baseline with
    the censored models counted, its blocked trend, and the slope by epoch."""
    answers = report.answer_questions(two_splits[1])
    rules = answers.numbers["settings"][0]["secondary"]["rules"]
    assert len(answers.secondary) == len(rules) == 2
    for line, rule in zip(answers.secondary, rules, strict=True):
        assert line.startswith(f"- {rule['label']}: first epoch below the linear baseline")
        censored = rule["first_beating"]["n_censored"]
        assert f"{censored} never did, censored as epoch 121" in line
        assert "blocked by (split, seed), one-sided" in line
        assert "Slope of the loss on hidden_dim by epoch: steepest" in line

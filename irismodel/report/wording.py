"""The answers in words, from their numbers; every value from the data goes through `clean`."""

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .answers import Answers
from .reference import literal_line_words, reference_words
from .statistics import SIGNIFICANCE
from .text import (
    Clean,
    interval_text,
    interval_words,
    models_text,
    no_number,
    p_text,
    rate_of,
    rate_text,
    setting_label,
)

SECOND_LOOP = (
    "- Why manual-no-zero-grad (the notebook's second loop) differs: it never resets its "
    "gradients (it calls the other model's optimizer.zero_grad()), so `.grad` holds the sum of "
    "every past epoch's gradient: momentum with no decay. Measured: the accumulated gradient's "
    "norm rises from about 0.2-1.5 to 5-25 and levels off (near 10), so the weights oscillate in "
    "a bounded band and never settle: most models fit first, then swing, finite throughout. The "
    'cause is gradient accumulation, not "PyTorch optimizations".'
)
OUTCOME_RULE = (
    "judged on the last tenth of the epochs, by its level (median loss) and swing (largest "
    "rise above a running low): diverged, a NaN/inf loss or weight, or every loss of the "
    "window above the first epoch's; oscillating, finite but swinging by more than max(0.05, "
    "a quarter of the level); stalled, settled at or above the loss of a logistic regression "
    "on the same training rows, or with a training accuracy no better than the majority "
    "class; converged otherwise"
)


def _outcome_words(mine: Mapping[str, Any]) -> str:
    n = mine["n_models"]
    if mine["n_unknown"]:
        return (f"{mine['n_diverged']} diverged ({rate_of(mine, 'diverged')}), {mine['n_unknown']} "
                f"outcome unknown (written by an older version) of {n} models")  # fmt: skip
    parts = [f"{mine[f'n_{name}']} {name} ({rate_of(mine, name)})"
             for name in ("stalled", "oscillating", "diverged")]  # fmt: skip
    return ", ".join([f"{mine['n_converged']} converged", *parts]) + f" of {n} models"


def _above(mine: Mapping[str, Any]) -> str:
    return (f"{mine['n_above_majority']} of {mine['n_models']} models above the majority class "
            f"({rate_text(*mine['above_majority'])})")  # fmt: skip


def question1_words(numbers: Mapping[str, Any], clean: Clean) -> tuple[list[str], list[str]]:
    """Question 1 for one setting in words, and its warning lines."""
    part, majority = numbers["accuracy_part"], numbers["majority_accuracy"]
    where = ("Held-out accuracy (test rows never trained on)" if part == "test" else
             "Training-data accuracy (NOT held out: test_size=0 evaluates on the training rows, "
             "as the notebook did)")  # fmt: skip
    lines = [f"- Outcome per model ({OUTCOME_RULE}), with 95% Wilson intervals of the rates:"]
    for mine in numbers["rules"].values():
        lines.append(f"  - {clean(mine['label'])}: {_outcome_words(mine)}.")
    lines.append(
        f"- {where} of every model (stalled, oscillating and diverged "
        "ones included): the median model, the share above always predicting the majority "
        f"class ({no_number(majority)}), and the mean of each (split, seed)'s mean over its "
        "hidden_dims:"
    )
    for mine in numbers["rules"].values():
        lines.append(
            f"  - {clean(mine['label'])}: median {no_number(mine['accuracy_median'])}; "
            f"{_above(mine)}; mean {interval_words(mine['accuracy'])}. Converged models only (a "
            f"filtered mean, for comparison): {interval_words(mine['accuracy_converged'])}."
        )
    for name, against in numbers["against_sgd"].items():
        lines.append(
            f"- {clean(name)} minus sgd, paired by (hidden_dim, split, seed), every pair: "
            f"{part} accuracy {interval_words(against['accuracy'])}, final training loss "
            f"{interval_words(against['final_loss'])} ({against['n_pairs']} pairs)."
        )
    if numbers["manual_repeats_sgd"]:
        engines = ", ".join(clean(e) for e in numbers["engines"]) or "this run's engine"
        lines.append(
            f"- sgd and manual: the batched engine ({engines}) runs manual's step as "
            "p.add_(p.grad, alpha=-lr), the op torch.optim.SGD runs, so their rows are identical "
            "by construction and shown once, as `sgd = manual`: not two confirmations of "
            "anything. The notebook's literal line is measured against SGD below."
        )
    reference, warnings = reference_words(numbers, clean)
    lines.extend(reference)
    if "manual-no-zero-grad" in numbers["rules"]:
        lines.append(SECOND_LOOP)
    return lines, warnings


def trend_words(result: Mapping[str, Any], what: str) -> str:
    """The blocked fall of `what` with hidden_dim, in words: test, slopes, power."""
    p, dims, slope = result["p_value"], result["dims"], result["slope"]
    span = f"{dims[0]}..{dims[-1]}" if len(dims) > 1 else "one hidden_dim"
    if len(dims) < 2 or not math.isfinite(p):
        return f"cannot tell ({result['n_blocks']} complete (split, seed) blocks over {span})"
    test = (f"{result['test']} test blocked by (split, seed), one-sided, {p_text(p)}, "
            f"{result['n_blocks']} blocks with a model at every hidden_dim {span}")  # fmt: skip
    verdict = (f"{what} falls as hidden_dim grows" if p < SIGNIFICANCE else
               f"no evidence that {what} falls as hidden_dim grows (that is not evidence of no "
               "trend: see the slopes' interval)")  # fmt: skip
    robust = result["theil_sen"]
    return (
        f"{verdict} ({test}); mean per-block slope {interval_words(slope, 4)} per unit of "
        f"hidden_dim, median per-block Theil-Sen slope "
        f"{interval_text(robust['median'], robust['low'], robust['high'], 4)}; the test "
        f"detects a slope of {no_number(result['detectable'], 4)} or steeper with 80% power "
        f"(2.8 standard errors), and the interval's half-width is "
        f"{no_number(result['half_width'], 4)}"
    )


def _loss_trend(result: Mapping[str, Any], clean: Clean) -> str:
    epoch = result["epoch"]
    return f"{clean(result['label'])}: {trend_words(result, f'the loss at epoch {epoch}')}."


def question2_words(results: Sequence[Mapping[str, Any]], clean: Clean) -> list[str]:
    """Question 2 for one setting in words: per rule, the blocked test, slopes and power."""
    lines = []
    for result in results:
        epoch = result["epoch"]
        line = f"- {_loss_trend(result, clean)}"
        medians = ", ".join(f"{m['hidden_dim']}: {no_number(m['median'])}"
                            for m in result["medians"])  # fmt: skip
        line += f" Median loss at epoch {epoch} by hidden_dim over the blocks tested: {medians}."
        left = result["n_left_out"]
        line += (f" {models_text(left)} left out: not finite at epoch {epoch}." if left else
                 " Every model counted (none is left out for what happened later).")  # fmt: skip
        lines.append(line)
    return lines


def _headline(entry: Mapping[str, Any], clean: Clean) -> list[str]:
    """The report's first lines for one setting: both answers, numbers first."""
    q1 = entry["question1"]
    lines = [
        f"Q1 {clean(mine['label'])}: {q1['accuracy_part']} accuracy median "
        f"{no_number(mine['accuracy_median'])}, mean {interval_words(mine['accuracy'])}; "
        f"{_above(mine)} (majority {no_number(q1['majority_accuracy'])}); "
        f"{mine['n_converged']} converged, {mine['n_stalled']} stalled, "
        f"{mine['n_oscillating']} oscillating, {mine['n_diverged']} diverged."
        for mine in q1["rules"].values()
    ]
    if literal := literal_line_words(q1["reference"]):
        lines.append(f"Q1 The notebook's hand-written update is {literal}.")
    return lines + [f"Q2 {_loss_trend(result, clean)}" for result in entry["question2"]]


SECONDARY_RULE = (
    "Fixed in advance, beside the notebook's question: the first epoch whose training loss is "
    "below the linear baseline (`baseline_loss`, a logistic regression's loss on the same "
    "training rows); a model that never gets there is censored at its run's epochs: counted as "
    "epochs + 1, ranked after every model that did, never dropped; tested for a fall with "
    "hidden_dim as question 2 is. And the mean per-(split, seed) slope of the loss on "
    "hidden_dim at log-spaced epochs, with its 95% interval over seeds and splits (plotted)."
)


def _epoch_text(value: float, epochs: int) -> str:
    known = f"never (> {epochs})" if math.isinf(value) else f"{value:g}"
    return "n/a" if math.isnan(value) else known


def _slope_by_epoch_words(curve: Mapping[str, Any], epoch: int) -> str:
    """The blocked slope by epoch: steepest where, its interval off 0 where, at `epoch`."""
    epochs, mean, low, high = (curve[k] for k in ("epoch", "mean", "low", "high"))
    finite = [i for i, m in enumerate(mean) if math.isfinite(m)]
    if not finite:
        return "Slope of the loss on hidden_dim by epoch: cannot tell (no complete blocks)"
    steep = min(finite, key=lambda i: mean[i])
    below = [epochs[i] for i in finite if high[i] < 0]
    above = [epochs[i] for i in finite if low[i] > 0]
    text = (f"Slope of the loss on hidden_dim by epoch: steepest "
            f"{interval_text(mean[steep], low[steep], high[steep], 4)} at epoch {epochs[steep]}; "
            f"95% interval below 0 at {len(below)} of {len(finite)} epochs kept")  # fmt: skip
    text += f" (between epochs {below[0]} and {below[-1]})" if below else ""
    text += f", above 0 at {len(above)} (between {above[0]} and {above[-1]})" if above else ""
    if epoch in epochs:
        i = epochs.index(epoch)
        text += f"; at epoch {epoch}: {interval_text(mean[i], low[i], high[i], 4)}"
    return text


def _secondary_words(entry: Mapping[str, Any], clean: Clean) -> list[str]:
    """The pre-specified secondary summaries of one setting in words: a line per rule."""
    lines, extra = [], entry["secondary"]
    epochs = extra["epochs"]
    for rule in extra["rules"]:
        beat, result = rule["first_beating"], rule["first_beating"]["trend"]
        medians = ", ".join(f"{d['hidden_dim']}: {_epoch_text(d['median'], epochs)}"
                            for d in beat["per_dim"])  # fmt: skip
        shares = ", ".join(f"{d['hidden_dim']}: {rate_text(*d['share'])}"
                           for d in beat["per_dim"])  # fmt: skip
        line = (f"- {clean(rule['label'])}: first epoch below the linear baseline "
                f"(loss {no_number(extra['baseline_loss'])}), median by hidden_dim {medians}; "
                f"share that ever beat it {shares}; {beat['n_censored']} never did, censored "
                f"as epoch {epochs + 1}")  # fmt: skip
        if beat["n_unknown"]:
            line += f" ({models_text(beat['n_unknown'])} without a stored baseline left out)"
        p, slope = result["p_value"], result["slope"]
        if math.isfinite(p):
            verdict = "Falls" if p < SIGNIFICANCE else "No evidence that it falls"
            line += (f". {verdict} as hidden_dim grows "
                     f"({result['test']} blocked by (split, seed), one-sided, {p_text(p)}, "
                     f"{result['n_blocks']} blocks); mean per-block slope, in epochs per "
                     f"unit of hidden_dim, {interval_words(slope, 2)}")  # fmt: skip
        else:
            line += f". Trend: cannot tell ({result['n_blocks']} complete blocks)"
        lines.append(f"{line}. {_slope_by_epoch_words(rule['slope_by_epoch'], entry['epoch'])}.")
    return lines


def word_answers(numbers: Mapping[str, Any], clean: Clean) -> Answers:
    """Word the answers from their numbers; `clean` renders each value taken from the data."""
    epoch, settings = numbers["epoch"], numbers["settings"]
    q1_parts, q2_parts, notes, warnings, headline, secondary = [], [], [], [], [], []
    for entry in settings:
        setting, used = entry["setting"], entry["epoch"]
        if used != epoch:
            notes.append(
                f"Runs with {setting['epochs']} epochs have no epoch {epoch}; their last "
                f"epoch ({used}) is used instead."
            )
        label = setting_label(setting, clean) if len(settings) > 1 else ""
        header = [f"With {label}:"] if label else []
        words, flagged = question1_words(entry["question1"], clean)
        warnings.extend(f"[{label}] {line}" if label else line for line in flagged)
        q1_parts.append("\n".join(header + words))
        q2_parts.append("\n".join(header + question2_words(entry["question2"], clean)))
        headline.extend(_headline(entry, clean))
        secondary.extend(header + _secondary_words(entry, clean))
    if numbers["n_diverged"]:
        notes.append(
            f"{numbers['n_diverged']} of {models_text(numbers['n_models'])} diverged"
            + (" (`sgd = manual` counted once)" if numbers.get("counted_once") else "")
            + "; they are counted in every rate, median and accuracy mean; a loss is left out "
            "only where it is not finite itself."
        )
    if numbers["n_unknown"]:
        notes.append(
            f"The outcome of {models_text(numbers['n_unknown'])} is unknown: written by an "
            "older version, their files store no baseline loss, so stalled cannot be "
            "told from converged (diverged still can)."
        )
    questions = "\n\n".join(q1_parts), "\n\n".join(q2_parts)
    return Answers(*questions, dict(numbers), notes, warnings, headline, secondary)

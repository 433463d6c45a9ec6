"""The answers in words, from their numbers; every value from the data goes through `clean`."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .answers import Answers
from .settings import REFERENCE_TOLERANCE, SIGNIFICANCE
from .summary import interval_text, rate_text

Clean = Callable[[Any], str]
OVER_SEEDS = "95% interval over seeds, one data split"


def setting_label(setting: Mapping[str, Any], clean: Clean) -> str:
    """The parameters that make a setting, as `name=value, ...`."""
    return (
        f"learning_rate={setting['learning_rate']:g}, epochs={setting['epochs']}, "
        f"test_size={setting['test_size']:g}, split_seed={setting['split_seed']}, "
        f"standardize={str(setting['standardize']).lower()}, "
        f"positive_class={clean(setting['positive_class'])}"
    )


def p_text(p: float) -> str:
    """`p = 0.042`, `p < 0.001` or `p undefined`."""
    if not math.isfinite(p):
        return "p undefined"
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}" if p < 0.01 else f"p = {p:.3f}"


def _seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def _change(slope: float) -> str:
    """A slope bound as `a fall of 0.0169`, `a rise of 0.3357` or `no change`."""
    if slope < 0:
        return f"a fall of {-slope:.4f}"
    return f"a rise of {slope:.4f}" if slope > 0 else "no change"


def _models(n: int) -> str:
    return f"{n} model" if n == 1 else f"{n} models"


def _outcome_words(mine: Mapping[str, Any]) -> str:
    n = mine["n_models"]
    if mine["n_unknown"]:
        rate = rate_text(mine["diverged_rate"], mine["diverged_low"], mine["diverged_high"])
        return (
            f"{mine['n_diverged']} diverged ({rate}), {mine['n_unknown']} outcome unknown "
            f"(written by an older version) of {n} models"
        )
    return (
        f"{mine['n_converged']} converged, {mine['n_stalled']} stalled "
        f"({rate_text(mine['stalled_rate'], mine['stalled_low'], mine['stalled_high'])}), "
        f"{mine['n_diverged']} diverged "
        f"({rate_text(mine['diverged_rate'], mine['diverged_low'], mine['diverged_high'])}) "
        f"of {n} models"
    )


def _verdict(low: float, high: float, majority: float) -> str:
    if not (math.isfinite(low) and math.isfinite(majority)):
        return ""
    if low > majority:
        return ": above the majority-class baseline"
    if high < majority:
        return ": below the majority-class baseline"
    return ": not distinguishable from the majority-class baseline"


def _reference_words(numbers: Mapping[str, Any], clean: Clean) -> tuple[list[str], list[str]]:
    """The reference check in words, and its warnings."""
    check, lines, warnings = numbers["reference"], [], []
    if check is None:
        why = numbers["reference_missing"]
        if why == "written by an older version":
            why = (
                "these results were written by an older version (schema 1 or 2), which "
                "retrained no model with the notebook's loop"
            )
        else:
            why = "no model of this run was retrained with the notebook's loop"
        return [f"- Reference check omitted: {why}."], []
    pairs = check["pairs"]
    lines.append(
        "- The update rules compared on the notebook's own loop (nn.Module, retrained "
        "from the same seed), curve for curve, per (hidden_dim, seed):"
    )
    if "manual" in pairs:
        pair = pairs["manual"]
        lines.append(
            f"  - hand-written update with zero_grad vs torch.optim.SGD: largest |difference| "
            f"of the loss curves {pair['max_abs_diff']:.2g} over {pair['n_pairs']} pairs, "
            f"{pair['n_identical']} of {pair['n_pairs']} bit-identical"
            + (
                ""
                if pair["n_identical"] == pair["n_pairs"]
                else " (`p -= lr * p.grad` rounds twice where SGD rounds once)"
            )
            + "."
        )
    if "manual-no-zero-grad" in pairs:
        pair = pairs["manual-no-zero-grad"]
        lines.append(
            f"  - without zero_grad vs torch.optim.SGD: the curves agree within "
            f"{REFERENCE_TOLERANCE:g} through epoch {pair['agrees_through']}, then part, by up "
            f"to {pair['max_abs_diff']:.2g}: the gradients accumulate ({pair['n_pairs']} pairs)."
        )
    if not pairs:
        lines.append("  - no (hidden_dim, seed) was checked under two rules.")
    lines.append(
        "- How closely this run's engine reproduced the notebook's loop (the largest "
        "|engine - notebook| loss over the epochs compared, and relative: each model's "
        "divided by max(1, its largest |notebook loss|), as float32 rounds relative to the "
        "loss; the tolerance applies to the relative one, diverged models left out"
        + (
            "; equal test predictions):"
            if numbers["accuracy_part"] == "test"
            else "; equal predictions on the training rows, as no row is held out):"
        )
    )
    for name, rule in check["rules"].items():
        agree, relative = rule["agree_share"], rule["max_rel_diff"]
        left_out = rule["n_left_out"]
        text = (
            f"  - {clean(name)}: {rule['max_abs_diff']:.2g} over {rule['epochs']} epochs "
            + (f"(relative {relative:.2g})" if math.isfinite(relative) else "(relative n/a)")
            + f", {_models(rule['n_checked'])}"
            + (f", {left_out} diverged and left out of the tolerance" if left_out else "")
        )
        text += "; predictions agree for " + ("n/a" if not math.isfinite(agree) else f"{agree:.0%}")
        if rule["flagged"]:
            text += f" - ABOVE the tolerance {REFERENCE_TOLERANCE:g}"
            warnings.append(
                f"WARNING: the engine's {name} curves differ from the notebook's loop by up to "
                f"{relative:.2g} relative to the loss (|difference| / max(1, |loss|); "
                f"tolerance {REFERENCE_TOLERANCE:g}"
                + (f"; {_models(left_out)} diverged, left out" if left_out else "")
                + "): the engine no longer computes what the notebook does."
            )
        elif name == "manual-no-zero-grad" and relative > REFERENCE_TOLERANCE:
            text += (
                f"; within {REFERENCE_TOLERANCE:g} through epoch {rule['agrees_through']}, "
                "after which its ever-growing accumulated step amplifies rounding "
                "differences: expected, not a failure"
            )
        lines.append(text + ".")
    return lines, warnings


def question1_words(numbers: Mapping[str, Any], clean: Clean) -> tuple[list[str], list[str]]:
    """Question 1 for one setting in words, and its warning lines."""
    part, majority = numbers["accuracy_part"], numbers["majority_accuracy"]
    baseline = numbers["baseline_loss"]
    where = (
        "held-out accuracy (test rows never trained on)"
        if part == "test"
        else "training-data accuracy (NOT held out: test_size=0 evaluates on the training rows, "
        "as the notebook did)"
    )
    lines = [
        "- Outcome per model (diverged: a NaN/inf loss or weight, or a final training loss "
        "above the first epoch's; stalled: a final training loss not below "
        + (f"{baseline:.3f}, " if math.isfinite(baseline) else "")
        + "the loss of a logistic regression on the same training rows; converged otherwise: it "
        "fitted the training rows better than the best linear model, which says nothing of "
        "held-out rows, where it may still do worse), "
        "with 95% Wilson intervals of the rates:"
    ]
    for mine in numbers["rules"].values():
        lines.append(f"  - {clean(mine['label'])}: {_outcome_words(mine)}.")
    lines.append(
        f"- {where[0].upper() + where[1:]}: each seed's mean over its hidden_dims, "
        f"then the mean over seeds [{OVER_SEEDS}], and the median seed:"
    )
    for mine in numbers["rules"].values():
        accuracy = mine["accuracy"]
        text = (
            f"  - {clean(mine['label'])}: "
            f"{interval_text(accuracy['mean'], accuracy['low'], accuracy['high'])}, median "
            + ("n/a" if not math.isfinite(accuracy["median"]) else f"{accuracy['median']:.3f}")
            + f" ({_seeds(accuracy['n'])}"
        )
        if mine["n_diverged"]:
            text += f"; {_models(mine['n_diverged'])} diverged, left out"
        if mine["n_stalled"]:
            text += f"; {mine['n_stalled']} of {mine['n_models']} models stalled"
        lines.append(text + ")" + _verdict(accuracy["low"], accuracy["high"], majority))
    if math.isfinite(majority):
        lines.append(f"  - Always predicting the majority class scores {majority:.3f}.")
    for name, against in numbers["against_sgd"].items():
        accuracy, final = against["accuracy"], against["final_loss"]
        lines.append(
            f"- {clean(name)} minus sgd, paired by (hidden_dim, seed), each seed's mean "
            f"difference, mean over seeds [{OVER_SEEDS}]: {part} accuracy "
            f"{interval_text(accuracy['mean'], accuracy['low'], accuracy['high'])}, final "
            f"training loss {interval_text(final['mean'], final['low'], final['high'])} "
            f"({against['n_pairs']} pairs, {_seeds(accuracy['n'])})."
        )
    if numbers["manual_repeats_sgd"]:
        engines = ", ".join(clean(e) for e in numbers["engines"]) or "this run's engine"
        lines.append(
            f"- sgd and manual: in the batched engine ({engines}) both rules are one code path, "
            "so their rows are identical by construction. They are shown once, as "
            "`sgd = manual`, and are not two confirmations of anything; whether the "
            "hand-written update matches torch.optim.SGD is measured below."
        )
    reference, warnings = _reference_words(numbers, clean)
    lines.extend(reference)
    if "manual-no-zero-grad" in numbers["rules"]:
        lines.append(
            "- Why manual-no-zero-grad (the notebook's second loop) differs: it never resets its "
            "gradients (it calls the other model's optimizer.zero_grad()), so `.grad` holds the "
            "sum of every past epoch's gradient and each step applies that sum: a step that "
            "keeps growing, which early on can speed training up like momentum and later "
            'overshoots. The cause is gradient accumulation, not "PyTorch optimizations".'
        )
    return lines, warnings


def question2_words(results: Sequence[Mapping[str, Any]], clean: Clean) -> list[str]:
    """Question 2 for one setting in words: per rule, the blocked one-sided test and the slope."""
    lines = []
    for result in results:
        epoch, p, dims, slope = result["epoch"], result["p_value"], result["dims"], result["slope"]
        blocks = result["n_blocks"]
        span = f"{dims[0]}..{dims[-1]}" if len(dims) > 1 else f"{dims[0]}"
        test = (
            f"{result['test']} test blocked by seed, one-sided, {p_text(p)}, {blocks} of "
            f"{_seeds(result['n_seeds'])} with a model at every hidden_dim {span}"
        )
        per_seed = (
            f"per-seed slope {interval_text(slope['mean'], slope['low'], slope['high'], 4)}"
            f" per unit of hidden_dim [{OVER_SEEDS}]"
        )
        low, high = slope["low"], slope["high"]
        bounded = slope["n"] > 1 and math.isfinite(low) and math.isfinite(high)
        power = f"the test has little power with {_seeds(blocks)}"
        if len(dims) < 2:
            verdict = f"cannot tell: only hidden_dim {span} was swept"
        elif not math.isfinite(p):
            verdict = f"cannot tell: {_seeds(blocks)} with a model at every hidden_dim"
        elif p < SIGNIFICANCE:
            verdict = f"the loss at epoch {epoch} falls as hidden_dim grows ({test}); {per_seed}"
            if bounded and not high < 0:
                verdict += (
                    f", which does not exclude {_change(low)} to {_change(high)} per unit: "
                    "the test and the interval disagree, so read the fall as uncertain"
                )
        elif bounded and low > 0:
            verdict = (
                f"the loss at epoch {epoch} rises as hidden_dim grows: the {per_seed} lies "
                f"entirely above zero, {_change(low)} to {_change(high)} per unit ({test})"
            )
        elif bounded and high < 0:
            verdict = (
                f"the {per_seed} lies entirely below zero ({_change(low)} to {_change(high)} "
                f"per unit), but the fall test is not significant ({test}): the two disagree, "
                f"and {power}, so a fall is likely but not shown by the test"
            )
        else:
            verdict = (
                f"no evidence that the loss at epoch {epoch} falls as hidden_dim grows with "
                f"{_seeds(blocks)} ({test}). That is not evidence of no trend: the {per_seed}"
            )
            if bounded:
                verdict += (
                    f", so anything from {_change(low)} to {_change(high)} per unit fits "
                    "these seeds"
                )
        medians = ", ".join(
            f"{m['hidden_dim']}: " + (f"{m['median']:.3f}" if math.isfinite(m["median"]) else "n/a")
            for m in result["medians"]
        )
        line = f"- {clean(result['label'])}: {verdict}. "
        line += (
            f"Median loss at epoch {epoch} by hidden_dim, over the {_seeds(blocks)} tested: "
            f"{medians}."
        )
        if result["n_diverged"]:
            line += f" {_models(result['n_diverged'])} diverged, left out " + (
                "(its seed too)." if result["n_diverged"] == 1 else "(their seeds too)."
            )
        lines.append(line)
    return lines


def word_answers(numbers: Mapping[str, Any], clean: Clean) -> Answers:
    """Word the answers from their numbers; `clean` renders each value taken from the data."""
    epoch, settings = numbers["epoch"], numbers["settings"]
    q1_parts, q2_parts, notes, warnings = [], [], [], []
    for entry in settings:
        setting, used = entry["setting"], entry["epoch"]
        if used != epoch:
            notes.append(
                f"Runs with {setting['epochs']} epochs have no epoch {epoch}; their last "
                f"epoch ({used}) is used instead."
            )
        header = [f"With {setting_label(setting, clean)}:"] if len(settings) > 1 else []
        words, flagged = question1_words(entry["question1"], clean)
        prefix = f"[{setting_label(setting, clean)}] " if len(settings) > 1 else ""
        warnings.extend(prefix + line for line in flagged)
        q1_parts.append("\n".join(header + words))
        q2_parts.append("\n".join(header + question2_words(entry["question2"], clean)))
    if numbers["n_diverged"]:
        notes.append(
            f"{numbers['n_diverged']} of {_models(numbers['n_models'])} diverged"
            + (
                " (`sgd = manual` counted once, as in the outcome lines)"
                if numbers.get("counted_once")
                else ""
            )
            + "; they are counted in the tables and left out of every mean, interval and trend."
        )
    if numbers["n_unknown"]:
        notes.append(
            f"The outcome of {_models(numbers['n_unknown'])} is unknown: written by an "
            "older version, their files store no baseline loss, so stalled cannot be "
            "told from converged (diverged still can)."
        )
    return Answers("\n\n".join(q1_parts), "\n\n".join(q2_parts), dict(numbers), notes, warnings)

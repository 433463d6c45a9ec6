"""The reference check: sampled models retrained by the notebook's own loop, compared, in words."""

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from irismodel.outcomes import classify

from .scan import Scan
from .settings import EPOCH_OF_INTEREST, optimizer_order
from .text import Clean

# The engine reproduces the notebook's loop for sgd and manual to ~3e-7 over 100 epochs.
REFERENCE_TOLERANCE = 1e-5
# The largest difference relative to the loss within 100 epochs that still reproduces the loop:
# manual's literal line rounds twice, its differences grow to 5e-5 (measured), so ten times that.
# manual-no-zero-grad amplifies rounding without bound: compared as a distribution, never flagged.
STRICT_RULES = {"sgd": REFERENCE_TOLERANCE, "manual": 5e-4}


def _scale(reference: np.ndarray) -> float:
    """What a difference is divided by: max(1, the largest |reference loss|)."""
    return max(1.0, float(np.max(np.abs(reference[np.isfinite(reference)]), initial=0.0)))


def _largest(values: list[float]) -> float:
    """The largest of `values` that is not NaN; NaN when there is none."""
    return max([v for v in values if not math.isnan(v)], default=math.nan)


def _agrees_through(difference: np.ndarray) -> int:
    """The last epoch up to which the curves agree within the tolerance (1-based)."""
    over = np.flatnonzero(~(difference <= REFERENCE_TOLERANCE))
    return int(over[0]) if len(over) else len(difference)


def rule_check(scan: Scan, rows: pd.DataFrame) -> dict[str, Any] | None:
    """Question 1's reference check for one setting; None when no row was checked.

    Per rule, the engine's curves against the notebook's loop (differences relative to the
    loss: float32 rounds relative to it); then the notebook's loops against each other.
    """
    sample = rows[rows["reference_checked"].to_numpy(np.float64) == 1.0]
    if sample.empty:
        return None
    positions = sample.index.to_numpy()
    reference, batched = scan.curves_of(positions, reference=True), scan.curves_of(positions)
    numbers: dict[str, Any] = {"rules": {}, "pairs": {}}
    for optimizer in optimizer_order(sample["optimizer"].astype(str).unique()):
        rows_of = sample[(sample["optimizer"] == optimizer).to_numpy()]
        mine = rows_of.index.to_numpy()
        columns = ("reference_max_abs_diff", "baseline_loss", "reference_epochs")
        stored, baselines, spans = (rows_of[c].to_numpy(np.float64) for c in columns)
        diverged = rows_of["_outcome"].astype(object).to_numpy() == "diverged"
        absolute, relative, through, early, same_outcome, pairs_of_curves = [], [], [], [], 0, []
        for position, kept, stored_diff, baseline, span in zip(
            mine.tolist(), ~diverged, stored, baselines, spans, strict=True
        ):
            ref = reference.get(position, np.empty(0))
            ours = batched.get(position, np.empty(0))[: len(ref)]
            scale = _scale(ref)
            largest = stored_diff
            if len(ref) and len(ours) == len(ref):
                difference = np.abs(ours - ref)
                largest = _largest([stored_diff, float(np.max(difference, initial=0.0))])
                pairs_of_curves.append((ours, ref))
                # outcomes judged by the same rule on the epochs compared
                judged = classify(np.stack([ours, ref]), np.zeros(2, bool), baseline)
                same_outcome += int(judged[0] == judged[1])
                if kept:
                    through.append(_agrees_through(difference / scale))
                    # flagged on the epochs up to the notebook's question: later, rounding
                    # differences of the same algorithm may grow on chaotic stretches
                    within = float(np.max(difference[:EPOCH_OF_INTEREST] / scale))
                    if span <= EPOCH_OF_INTEREST:  # the stored difference is as early
                        within = _largest([within, stored_diff / scale])
                    early.append(within)
            absolute.append(largest)
            if kept:
                relative.append(largest / scale)
        agrees = rows_of["reference_agrees"].to_numpy(np.float64)
        curves = [(a, b) for a, b in pairs_of_curves if len(a) == len(pairs_of_curves[0][0])]
        median_gap = math.nan
        if curves:  # the sample's median curves: what a chaotic rule reproduces
            medians = [np.median(np.stack(side), axis=0) for side in zip(*curves, strict=True)]
            median_gap = float(np.max(np.abs(medians[0] - medians[1])))
        tolerance = STRICT_RULES.get(optimizer, math.nan)
        numbers["rules"][optimizer] = {
            "n_checked": len(mine), "n_compared": len(pairs_of_curves),
            "n_same_outcome": same_outcome, "median_curve_gap": median_gap,
            "n_agree": int(np.nansum(agrees)), "n_left_out": int(diverged.sum()),
            "epochs": int(np.nanmax([*spans, 0])),
            "max_abs_diff": _largest(absolute), "max_rel_diff": _largest(relative),
            "agree_share": float(np.nanmean(agrees)) if np.isfinite(agrees).any() else math.nan,
            "agrees_through": min(through) if through else None, "tolerance": tolerance,
            "flagged": optimizer in STRICT_RULES and bool(early) and not max(early) <= tolerance,
        }  # fmt: skip
    keys = sample[["hidden_dim", "split_seed", "seed", "optimizer"]].astype(object)
    where = {tuple(k): p for k, p in zip(keys.itertuples(index=False), positions, strict=True)}
    for other in ("manual", "manual-no-zero-grad"):
        sgd = [(p, (*key[:3], other)) for key, p in where.items() if key[3] == "sgd"]
        both = [(reference[p], reference[where[key]]) for p, key in sgd if key in where]
        both = [(a, b) for a, b in both if len(a) == len(b) and len(a)]
        if both:
            numbers["pairs"][other] = {
                "n_pairs": len(both), "n_identical": sum(np.array_equal(a, b) for a, b in both),
                "max_abs_diff": max([0.0, *(float(np.max(np.abs(a - b))) for a, b in both)]),
                "agrees_through": min(_agrees_through(np.abs(a - b) / _scale(a)) for a, b in both),
                "epochs": max(len(a) for a, _ in both),
            }  # fmt: skip
    return numbers


def literal_line_words(check: Mapping[str, Any] | None) -> str | None:
    """The notebook's fixed loop against torch.optim.SGD, as measured; None when not checked."""
    pair = (check or {}).get("pairs", {}).get("manual")
    if not pair:
        return None
    if pair["n_identical"] == pair["n_pairs"]:
        return (f"bit for bit equal to torch.optim.SGD over {pair['n_pairs']} checked pairs "
                "(largest difference 0)")  # fmt: skip
    return (
        f"equal to torch.optim.SGD up to float32 rounding: largest difference "
        f"{pair['max_abs_diff']:.2g} over {pair['epochs']} epochs, {pair['n_identical']} of "
        f"{pair['n_pairs']} pairs bit-identical (`param -= learning_rate * param.grad` rounds "
        "twice where SGD's add_ rounds once)"
    )


def reference_words(numbers: Mapping[str, Any], clean: Clean) -> tuple[list[str], list[str]]:
    """The reference check in words, and its warnings."""
    check, warnings = numbers["reference"], []
    if check is None:
        why = ("these results were written by an older version (schema 1 or 2), which retrained "
               "no model with the notebook's loop" if numbers["reference_missing"] ==
               "written by an older version" else
               "no model of this run was retrained with the notebook's loop")  # fmt: skip
        return [f"- Reference check omitted: {why}."], []
    pairs = check["pairs"]
    lines = [
        "- The notebook's own loops (an nn.Module per model, retrained from the same seed and "
        "split; the hand-written update literally `param -= learning_rate * param.grad` under "
        "torch.no_grad()), compared curve for curve per (hidden_dim, split, seed):"
    ]
    if literal := literal_line_words(check):
        lines.append(f"  - the fixed loop (with zero_grad): {literal}.")
    if pair := pairs.get("manual-no-zero-grad"):
        lines.append(
            f"  - the second loop (no zero_grad) vs torch.optim.SGD: within "
            f"{REFERENCE_TOLERANCE:g} through epoch {pair['agrees_through']}, then apart by up to "
            f"{pair['max_abs_diff']:.2g}: the gradients accumulate ({pair['n_pairs']} pairs)."
        )
    if not pairs:
        lines.append("  - no (hidden_dim, split, seed) was checked under two rules.")
    part = "test" if numbers["accuracy_part"] == "test" else "training-row"
    lines.append(
        "- This run's engine against the notebook's loop, on the checked models (seeds and "
        "splits spread over the run):"
    )
    for name, rule in check["rules"].items():
        m, epochs, largest = rule["n_compared"], rule["epochs"], rule["max_abs_diff"]
        if name == "manual-no-zero-grad":
            text = (
                f"  - {clean(name)}: single trajectories are chaotic (rounding decides them), so "
                f"the distributions are compared: outcomes over {epochs} epochs agree for "
                f"{rule['n_same_outcome']} of {m}; the checked sample's median curves differ by "
                f"at most {rule['median_curve_gap']:.2g} (single curves by up to {largest:.2g})"
            )
        else:
            equal = ("bit for bit equal" if largest == 0 else
                     f"equal up to float32 rounding: largest difference {largest:.2g}")  # fmt: skip
            text = (
                f"  - {clean(name)}: {equal} over {epochs} epochs; outcomes agree for "
                f"{rule['n_same_outcome']} of {m}; {part} predictions for {rule['n_agree']} of "
                f"{rule['n_checked']}"
            )
        if rule["n_left_out"]:
            text += f"; {rule['n_left_out']} diverged and left out of the tolerance"
        if rule["flagged"]:
            text += f" - ABOVE the tolerance {rule['tolerance']:g}"
            warnings.append(
                f"WARNING: the engine's {name} curves differ from the notebook's loop by more "
                f"than {rule['tolerance']:g} relative to the loss within the first "
                f"{EPOCH_OF_INTEREST} epochs (up to {rule['max_rel_diff']:.2g} over all): the "
                "engine no longer computes what the notebook does."
            )
        lines.append(text + ".")
    return lines, warnings

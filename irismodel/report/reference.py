"""The reference check: sampled models retrained by the notebook's own loop, compared."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from .reading import CURVE_COLUMN, REFERENCE_CURVE_COLUMN, each_curve
from .scan import Scan
from .settings import REFERENCE_TOLERANCE, optimizers_of

# Rules whose engine must reproduce the notebook's loop to rounding: a larger difference is
# flagged. manual-no-zero-grad's accumulating step amplifies rounding (see `rule_check`).
STRICT_RULES = ("sgd", "manual")


def _curves(scan: Scan, positions: np.ndarray, column: str) -> dict[int, np.ndarray]:
    """The list `column` of the models at `positions`, as float64 arrays (a few models only)."""
    out: dict[int, np.ndarray] = {}

    def visit(index: int, mine: np.ndarray, lists: pa.Array) -> None:
        for position, values in zip(mine.tolist(), lists.to_pylist(), strict=True):
            out[position] = np.asarray(values if values is not None else [], np.float64)

    if len(positions):
        each_curve(scan.source, scan.models, positions, visit, column=column)
    return out


def _agrees_through(difference: np.ndarray) -> int:
    """The last epoch up to which the curves agree within the tolerance (1-based)."""
    over = np.flatnonzero(~(difference <= REFERENCE_TOLERANCE))
    return int(over[0]) if len(over) else len(difference)


def rule_check(scan: Scan, rows: pd.DataFrame) -> dict[str, Any] | None:
    """Question 1's reference check for one setting; None when no row was checked.

    Per rule: the models checked, the epochs compared, the largest |batched - reference|
    loss over those epochs (the larger of the stored `reference_max_abs_diff` and the one
    measured here from both curves), the share whose test predictions agree, the epoch up to
    which every curve agreed within `REFERENCE_TOLERANCE`, and whether the rule is flagged.
    Then the notebook's loops compared to each other, curve for curve: sgd's against manual's
    and against manual-no-zero-grad's, for each (hidden_dim, seed) checked under both.
    """
    checked = rows["reference_checked"].to_numpy(np.float64) == 1.0
    if not checked.any():
        return None
    positions = rows.index.to_numpy()[checked]
    reference = _curves(scan, positions, REFERENCE_CURVE_COLUMN)
    batched = _curves(scan, positions, CURVE_COLUMN)
    models = scan.models
    numbers: dict[str, Any] = {"rules": {}, "pairs": {}}
    for optimizer in optimizers_of(rows.iloc[np.flatnonzero(checked)]):
        mine = positions[(models.loc[positions, "optimizer"] == optimizer).to_numpy()]
        stored = models.loc[mine, "reference_max_abs_diff"].to_numpy(np.float64)
        measured, through = [], []
        for position in mine.tolist():
            ref = reference.get(position, np.empty(0))
            ours = batched.get(position, np.empty(0))[: len(ref)]
            if len(ref) and len(ours) == len(ref):
                difference = np.abs(ours - ref)
                measured.append(float(np.max(difference, initial=0.0)))
                through.append(_agrees_through(difference))
        largest = float(np.nanmax(np.concatenate([stored, measured, [math.nan]])))
        agrees = models.loc[mine, "reference_agrees"].to_numpy(np.float64)
        epochs = models.loc[mine, "reference_epochs"].to_numpy(np.float64)
        numbers["rules"][optimizer] = {
            "n_checked": len(mine),
            "epochs": int(np.nanmax([*epochs, 0])),
            "max_abs_diff": largest,
            "agree_share": float(np.nanmean(agrees)) if np.isfinite(agrees).any() else math.nan,
            "agrees_through": min(through) if through else None,
            "flagged": optimizer in STRICT_RULES and not largest <= REFERENCE_TOLERANCE,
        }
    keys = models.loc[positions, ["hidden_dim", "seed", "optimizer"]].astype(object)
    where = {tuple(k): p for k, p in zip(keys.itertuples(index=False), positions, strict=True)}
    for other in ("manual", "manual-no-zero-grad"):
        largest, identical, pairs, through = 0.0, 0, 0, []
        for (hidden_dim, seed, optimizer), position in where.items():
            if optimizer != "sgd" or (hidden_dim, seed, other) not in where:
                continue
            a, b = reference[position], reference[where[(hidden_dim, seed, other)]]
            if len(a) != len(b) or not len(a):
                continue
            pairs += 1
            identical += int(np.array_equal(a, b))
            difference = np.abs(a - b)
            largest = max(largest, float(np.max(difference)))
            through.append(_agrees_through(difference))
        if pairs:
            numbers["pairs"][other] = {
                "n_pairs": pairs, "n_identical": identical, "max_abs_diff": largest,
                "agrees_through": min(through),
            }  # fmt: skip
    return numbers

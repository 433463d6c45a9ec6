"""The report's constants, its error, and how rows split into settings that are never pooled."""

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from irismodel.outcomes import OUTCOMES

EPOCH_OF_INTEREST = 100  # the notebook's
# Parameters that change what a loss or an accuracy means: rows that differ in one of them are
# never pooled. The split seed is not one of them: splits are a sweep axis, a source of chance
# that every interval covers, as the model seeds are.
SETTING_COLUMNS = (
    "learning_rate",
    "epochs",
    "standardize",
    "test_size",
    "positive_class",
    "data_fingerprint",
)
# Display order of the optimizers: the names of irismodel.optimizers.OPTIMIZERS, repeated here
# because that registry imports torch, which a report has no use for (a test keeps them equal).
OPTIMIZER_ORDER = ("sgd", "manual", "manual-no-zero-grad", "momentum", "adam")
# irismodel.outcomes' outcomes, and "unknown" for rows of files written before them.
ALL_OUTCOMES = (*OUTCOMES, "unknown")


class ReportError(ValueError):
    """The results cannot be reported on (no rows, or an epoch that does not exist)."""


def check_epoch(epoch: Any) -> int:
    """Return `epoch` as an int, or raise `ReportError` unless it is a positive integer."""
    if isinstance(epoch, bool) or not isinstance(epoch, int | np.integer) or epoch < 1:
        raise ReportError(f"epoch: {epoch!r} is not allowed; it must be a positive integer")
    return int(epoch)


def accuracy_part(rows: pd.DataFrame) -> str:
    """`test` where a setting's rows were held out, else `train` (test_size=0 reuses them)."""
    held_out = bool(rows["test_size"].iloc[0] > 0) and rows["test_accuracy"].notna().any()
    return "test" if held_out else "train"


def varying_settings(frame: pd.DataFrame) -> list[str]:
    """Return the setting columns that take more than one value in `frame`."""
    return [c for c in SETTING_COLUMNS if frame[c].nunique(dropna=False) > 1]


def settings_of(frame: pd.DataFrame) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """Split `frame` into groups of one setting each: [(setting values, rows)].

    One setting (the usual case) is `frame` itself, not a copy of a million rows.
    """
    columns = list(SETTING_COLUMNS)
    indices = frame.groupby(columns, sort=True, dropna=False, observed=True).indices
    groups = sorted(indices.items(), key=lambda item: item[0])
    whole = len(groups) == 1
    return [(dict(zip(columns, key, strict=True)), frame if whole else frame.iloc[positions])
            for key, positions in groups]  # fmt: skip


def optimizer_order(names: Iterable[str]) -> list[str]:
    """Return the optimizer names in display order: the registry's, then the rest by name."""
    order = list(OPTIMIZER_ORDER)
    return sorted(set(names), key=lambda n: (order.index(n) if n in order else len(order), n))

"""The reference check: a sample of a run's models retrained with the notebook's own loop."""

import dataclasses
import threading

import numpy as np
import torch

from irismodel.data import Split
from irismodel.engine import TrainingRun, predict_proba, train_batched, train_reference
from irismodel.ranges import IntRanges

# Largest loss difference over the checked epochs that still counts as reproducing the
# notebook's loop: float32 rounding of the same sums in another order stays near 1e-7.
TOLERANCE = 1e-5


def warm_up() -> threading.Thread:
    """Start, in a thread, the one-time set-up of the notebook's loop in this process.

    The first `torch.optim.SGD(...)` imports torch._dynamo (about 1.2 s, holding the GIL): done
    while the run opens, not on the first shard checked. Not a daemon: never ended mid-import.
    """
    params = [torch.nn.Parameter(torch.zeros(1))]
    thread = threading.Thread(target=torch.optim.SGD, args=(params, 0.1), name="reference-warm-up")
    thread.start()
    return thread


@dataclasses.dataclass(frozen=True)
class ReferenceCheck:
    """The check of one shard's models: per model (K,), with NaN/None where not checked."""

    checked: np.ndarray  # (K,) bool
    epochs: int  # epochs compared (0 when none was checked)
    max_abs_diff: np.ndarray  # (K,) float64, NaN where not checked
    agrees: np.ndarray  # (K,) bool, meaningful where checked
    curves: list[np.ndarray | None]  # (K,) the reference loop's loss curve, None where not


def checked_pairs(
    seeds: IntRanges, per_configuration: int, splits: IntRanges
) -> set[tuple[int, int]]:
    """Return the (split seed, seed) pairs checked in every configuration, spread over the run.

    Check i of k takes the seed and the split i / (k - 1) of the way through each (the first
    and the last included); with k at least the run's seeds, every seed is checked.
    """
    n, m = len(seeds), max(len(splits), 1)
    k = min(max(per_configuration, 0), n)
    step = 1 / (k - 1) if k > 1 else 0.0
    return {
        (splits.take(p, p + 1)[0] if len(splits) else 0, seeds.take(s, s + 1)[0])
        for s, p in ((round(i * step * (n - 1)), round(i * step * (m - 1))) for i in range(k))
    }


def checked_seeds(
    seeds: IntRanges, per_configuration: int, splits: IntRanges, split_seed: int
) -> set[int]:
    """Return the seeds checked on split `split_seed` (`checked_pairs`; one split: all of them)."""
    return {s for p, s in checked_pairs(seeds, per_configuration, splits) if p == split_seed}


def _curve_difference(batched: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Return (K,) max |batched - reference| per model; NaN against a number counts as inf."""
    a, b = batched.astype(np.float64), reference.astype(np.float64)
    with np.errstate(invalid="ignore"):
        diff = np.abs(a - b)
    diff[np.isnan(a) & np.isnan(b)] = 0.0
    diff[np.isnan(diff)] = np.inf  # one NaN, the other not; or inf against inf of the same sign
    return diff.max(axis=1, initial=0.0)


def check_against_reference(
    split: Split,
    run: TrainingRun,
    learning_rate: float,
    seeds: set[int],
    epochs: int,
    loop: str = "auto",
) -> ReferenceCheck:
    """Retrain `run`'s models of `seeds` by the notebook's loop; compare losses and predictions."""
    positions = [i for i, seed in enumerate(run.seeds) if seed in seeds]
    epochs = min(epochs, run.epochs)
    k = len(run.seeds)  # none checked yet
    check = ReferenceCheck(np.zeros(k, bool), 0, np.full(k, np.nan), np.zeros(k, bool), [None] * k)
    if not positions or epochs < 1:
        return check
    sample = [run.seeds[i] for i in positions]
    arguments = (split.x_train, split.y_train, run.hidden_dim, run.optimizer, sample)
    reference = train_reference(*arguments, learning_rate, epochs, run.device)
    short = train_batched(*arguments, learning_rate, epochs, run.device, loop=loop)
    rows = np.asarray(positions)
    stored = run.loss_curves[rows, :epochs]
    check.max_abs_diff[rows] = _curve_difference(stored, reference.loss_curves)
    # predictions where they are judged: the test rows, or every row when none is held out
    x = split.x_test if len(split.x_test) else split.x_train
    ours, theirs = (predict_proba(r.parameters, x) > 0.5 for r in (short, reference))
    # the short batched run stands for the stored rows only if its curve is theirs: bit for bit
    # on the CPU; on a GPU a batch of another size may round differently in the last bits
    same_run = _curve_difference(short.loss_curves, stored) <= TOLERANCE
    check.agrees[rows] = (ours == theirs).all(axis=1) & same_run
    check.checked[rows] = True
    for row, curve in zip(positions, reference.loss_curves, strict=True):
        check.curves[row] = curve
    return dataclasses.replace(check, epochs=epochs)

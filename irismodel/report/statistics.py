"""The report's statistics: bootstrap intervals over seeds and splits, Wilson rates, trend tests."""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
SIGNIFICANCE = 0.05
# Resamples of every bootstrap interval, and its fixed seed: the same data give the same report.
BOOTSTRAP_RESAMPLES = 999
BOOTSTRAP_SEED = 20261127
ACCURACY_BOUNDS = (0.0, 1.0)
LOSS_BOUNDS = (0.0, math.inf)
UNBOUNDED = (-math.inf, math.inf)


@dataclass(frozen=True)
class Interval:
    """A mean over seeds (and splits), its median, a 95% bootstrap interval and how it was made."""

    n: int
    mean: float
    median: float
    low: float
    high: float
    method: str
    n_splits: int = 1  # the data splits the interval covers
    se: float = math.nan  # the bootstrap standard error of the statistic

    def covers(self) -> str:
        """What the interval is over: `over 300 seeds x 6 splits`, or `over 30 seeds, one split`."""
        if self.n_splits > 1:
            return f"over {self.n} seeds x {self.n_splits} splits"
        return f"over {self.n} seeds, one data split"


def rate_interval(count: int, total: int) -> tuple[float, float, float]:
    """Return (count / total, low, high): the Wilson 95% interval of a proportion, NaN if none."""
    if total <= 0:
        return math.nan, math.nan, math.nan
    test = stats.binomtest(int(count), int(total))
    ci = test.proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return count / total, float(ci.low), float(ci.high)


def fall_test(matrix: np.ndarray) -> tuple[str, float]:
    """Return (test name, one-sided p) that values fall along the columns (rows are blocks).

    Page's L test; with two columns, where it is undefined, the Wilcoxon signed-rank test.
    """
    seeds, dims = matrix.shape
    if seeds < 2 or dims < 2:
        return "none", math.nan
    if dims == 2:
        differences = matrix[:, 1] - matrix[:, 0]
        if not np.any(differences):
            return "Wilcoxon signed-rank", 1.0
        return "Wilcoxon signed-rank", float(stats.wilcoxon(differences, alternative="less").pvalue)
    # Page's alternative: values rise along the columns' order; reversed, that is a fall
    return "Page's L", float(stats.page_trend_test(matrix[:, ::-1]).pvalue)


def seed_slopes(matrix: np.ndarray, dims: np.ndarray) -> np.ndarray:
    """Return per seed (row) the least-squares slope of its values against hidden_dim."""
    centred = dims.astype(np.float64) - dims.mean()
    return (matrix - matrix.mean(axis=1, keepdims=True)) @ centred / (centred @ centred)


def block_matrix(
    splits: np.ndarray, seeds: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (split seeds, seeds, matrix splits x seeds) of `values`, NaN where none was given."""
    split_ids, split_at = np.unique(splits, return_inverse=True)
    seed_ids, seed_at = np.unique(seeds, return_inverse=True)
    matrix = np.full((len(split_ids), len(seed_ids)), math.nan)
    matrix[split_at, seed_at] = values
    return split_ids, seed_ids, matrix


def crossed_interval(
    matrix: np.ndarray, bounds: tuple[float, float] = UNBOUNDED, statistic: str = "mean"
) -> Interval:
    """Return the mean (or median) of a splits x seeds matrix and its 95% bootstrap interval.

    Splits and seeds are drawn with replacement, each seed whole across splits (seeds are
    crossed with splits); NaN cells are skipped; the interval is clipped to `bounds`.
    """
    return crossed_intervals([matrix], [bounds], statistic)[0]


def crossed_intervals(
    matrices: Sequence[np.ndarray],
    bounds: Sequence[tuple[float, float]] | None = None,
    statistic: str = "mean",
) -> list[Interval]:
    """Return `crossed_interval` of each matrix (clipped to its `bounds`), bit for bit.

    Every interval draws its resamples from the same seed, so matrices of one shape (after
    their empty rows and columns are dropped) draw the same splits and seeds: they are drawn,
    and counted, once for all of them. Many intervals over the same seeds then cost little more
    than one (the slope at each epoch, the quantities of a configuration).
    """
    found: list[Interval | None] = [None] * len(matrices)
    shapes: dict[tuple[int, int], list[tuple[int, np.ndarray, np.ndarray, float, float]]] = {}
    for i, given in enumerate(matrices):
        matrix = np.atleast_2d(np.asarray(given, np.float64))
        finite = np.isfinite(matrix)
        keep_rows, keep_cols = finite.any(axis=1), finite.any(axis=0)
        if not (keep_rows.all() and keep_cols.all()):  # else no copy: many may be held at once
            matrix, finite = matrix[keep_rows][:, keep_cols], finite[keep_rows][:, keep_cols]
        m, n = matrix.shape
        values = matrix[finite]
        if values.size == 0:
            found[i] = Interval(0, math.nan, math.nan, math.nan, math.nan, "no seeds")
            continue
        mean, median = float(values.mean()), float(np.median(values))
        if n == 1 and m == 1:
            found[i] = Interval(1, mean, median, math.nan, math.nan, "one seed")
        elif np.all(values == values[0]):
            found[i] = Interval(n, mean, median, mean, mean, "all equal", m, 0.0)
        else:
            shapes.setdefault((m, n), []).append((i, matrix, finite, mean, median))
    for (m, n), group in shapes.items():
        resampled = _resampled([(matrix, finite) for _, matrix, finite, _, _ in group], statistic)
        for (i, _, _, mean, median), out in zip(group, resampled, strict=True):
            out = out[np.isfinite(out)]
            alpha = 1 - CONFIDENCE
            low, high = (
                np.quantile(out, [alpha / 2, 1 - alpha / 2]) if out.size else (math.nan,) * 2
            )
            method = "bootstrap over splits and seeds" if m > 1 else "bootstrap over seeds"
            clip = bounds[i] if bounds is not None else UNBOUNDED
            low, high = max(float(low), clip[0]), min(float(high), clip[1])
            se = float(np.std(out, ddof=1)) if out.size > 1 else 0.0
            centre = mean if statistic == "mean" else median
            found[i] = Interval(n, centre, median, low, high, method, m, se)
    return [interval for interval in found if interval is not None]


def _resampled(matrices: list[tuple[np.ndarray, np.ndarray]], statistic: str) -> list[np.ndarray]:
    """The statistic of every bootstrap resample of each (matrix, finite) pair, all m x n.

    The splits and seeds drawn for a resample are the same for every matrix of the group.
    """
    m, n = matrices[0][0].shape
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    outs = [np.empty(BOOTSTRAP_RESAMPLES) for _ in matrices]
    ones = np.ones((m, n))  # the weights of a matrix without NaN, shared
    sums = [
        (matrix, ones) if finite.all() else (np.where(finite, matrix, 0.0), finite.astype(float))
        for matrix, finite in matrices
    ]
    batch = max(1, (1 << 21) // max(m * n, 1))
    for start in range(0, BOOTSTRAP_RESAMPLES, batch):
        size = min(batch, BOOTSTRAP_RESAMPLES - start)
        rows = rng.integers(0, m, (size, m))  # (size, m) splits drawn
        cols = rng.integers(0, n, (size, n))  # (size, n) seeds drawn
        if statistic == "mean":
            # counts of each split and seed drawn: the resample's sum is a weighted sum
            row_counts, col_counts = _counts(rows, m), _counts(cols, n)
            for out, (filled, weights) in zip(outs, sums, strict=True):
                total = np.einsum("bi,ij,bj->b", row_counts, filled, col_counts)
                count = np.einsum("bi,ij,bj->b", row_counts, weights, col_counts)
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[start : start + size] = total / count
        else:
            for out, (matrix, _) in zip(outs, matrices, strict=True):
                for b in range(size):
                    drawn = matrix[np.ix_(rows[b], cols[b])]
                    drawn = drawn[np.isfinite(drawn)]
                    out[start + b] = np.median(drawn) if drawn.size else math.nan
    return outs


def _counts(drawn: np.ndarray, width: int) -> np.ndarray:
    """(resamples, width) counts of each index drawn, row by row, from (resamples, k) draws."""
    flat = (np.arange(len(drawn))[:, None] * width + drawn).ravel()
    counts = np.bincount(flat, minlength=len(drawn) * width)
    return counts.reshape(len(drawn), width).astype(np.float64)


def theil_sen_slopes(matrix: np.ndarray, dims: np.ndarray) -> np.ndarray:
    """Return per row (block) the Theil-Sen slope: the median of its pairwise slopes."""
    x = dims.astype(np.float64)
    i, j = np.triu_indices(len(x), k=1)
    pairwise = (matrix[:, j] - matrix[:, i]) / (x[j] - x[i])  # (blocks, pairs)
    return np.median(pairwise, axis=1) if pairwise.shape[1] else np.full(len(matrix), math.nan)

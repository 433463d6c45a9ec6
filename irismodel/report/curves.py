"""Per-epoch aggregates of the loss curves: sums and log-spaced histograms, never the curves."""

import functools
import threading
from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

GRID_POINTS = 100  # log-spaced epochs drawn per curve, and as many evenly spaced
BAND = (0.1, 0.9)  # the loss-curve band: this share of seeds lies between its edges
# Histogram bins: the top bits of a positive float32 (its exponent and 3 mantissa bits) are a
# monotonic, log-spaced bin index, 8 bins per octave, read with a shift instead of a logarithm.
_BIN_SHIFT = 20
_BIN_FIRST = (127 - 20) << 3  # bits >> shift of 2**-20, the lowest edge
_BIN_COUNT = 30 * 8 + 2  # [2**-20, 2**10) and an underflow (incl. 0) and overflow (incl. NaN) bin
_BIN_BITS = (np.arange(_BIN_COUNT - 1, dtype=np.int64) + _BIN_FIRST) << _BIN_SHIFT
_BIN_EDGES = np.concatenate([[0.0], _BIN_BITS.astype(np.int32).view(np.float32), [2.0**10]])


def by_length(
    curves: pa.Array, lengths: np.ndarray
) -> Iterator[tuple[np.ndarray | None, np.ndarray]]:
    """Yield (rows or None for all, values as a rows x length matrix) per curve length."""
    distinct = np.unique(lengths)
    for length in distinct[distinct != 0]:
        chosen = None if len(distinct) == 1 else lengths == length
        part = curves if chosen is None else curves.filter(pa.array(chosen))
        yield chosen, pc.list_flatten(part).to_numpy(zero_copy_only=False).reshape(-1, int(length))


@functools.lru_cache(maxsize=64)
def grid(length: int, epoch: int) -> np.ndarray:
    """The epochs (0-based positions) a curve is drawn through: all of them up to 200."""
    points = np.arange(length)
    if length > 2 * GRID_POINTS:
        spaced = np.geomspace(1, length, GRID_POINTS), np.linspace(1, length, GRID_POINTS)
        epochs = np.concatenate([*spaced, [min(epoch, length), length]])
        points = np.unique(np.rint(epochs).astype(np.int64)) - 1
    points.flags.writeable = False
    return points


class Curves:
    """Per group (setting x hidden_dim x optimizer) and drawn epoch, sums of undiverged curves."""

    def __init__(self, lengths: Sequence[int], epoch: int) -> None:
        self.grids = [grid(int(n), epoch) for n in lengths]
        self.sums: list[dict[str, np.ndarray] | None] = [None] * len(self.grids)  # None: no curve
        self._locks = [threading.Lock() for _ in range(16)]  # files are read in threads

    def add(self, group: int, matrix: np.ndarray) -> None:
        """Add the curves `matrix` (models x epochs) of models of `group`; threads may call it."""
        drawn = self.grids[group]
        inside = drawn[: np.searchsorted(drawn, matrix.shape[1])]
        if not len(inside) or not len(matrix):
            return
        values = matrix.take(inside, axis=1)  # the drawn epochs only: a fifth of 1,000
        wide = values.astype(np.float64)
        total = np.einsum("ij->j", wide)
        if not np.isfinite(total).all():  # rare: find the guilty rows only then
            finite = np.isfinite(wide).all(axis=1)
            values, wide = values[finite], wide[finite]
            total = np.einsum("ij->j", wide)
        least, largest = wide.min(axis=0, initial=np.inf), wide.max(axis=0, initial=-np.inf)
        bins = np.ascontiguousarray(values, dtype=np.float32).view(np.int32) >> _BIN_SHIFT
        bins -= _BIN_FIRST - 1  # negative floats stay negative: the underflow bin
        np.clip(bins, 0, _BIN_COUNT - 1, out=bins)
        width, size = len(inside), len(drawn)
        bins += np.arange(width, dtype=np.int32) * _BIN_COUNT
        counts = np.bincount(bins.ravel(), minlength=width * _BIN_COUNT)
        with self._locks[group % len(self._locks)]:
            if self.sums[group] is None:
                self.sums[group] = {
                    "count": np.zeros(size, np.int64), "total": np.zeros(size),
                    "least": np.full(size, np.inf), "largest": np.full(size, -np.inf),
                    "histogram": np.zeros((size, _BIN_COUNT), np.int32),
                }  # fmt: skip
            sums = self.sums[group]
            sums["count"][:width] += len(values)
            sums["total"][:width] += total
            np.minimum(sums["least"][:width], least, out=sums["least"][:width])
            np.maximum(sums["largest"][:width], largest, out=sums["largest"][:width])
            sums["histogram"][:width] += counts.reshape(width, _BIN_COUNT).astype(np.int32)

    def band(self, group: int) -> dict[str, np.ndarray] | None:
        """Per grid epoch: epoch (1-based), n, mean, least, q10, median, q90, largest."""
        sums = self.sums[group]
        if sums is None:
            return None
        present = sums["count"] > 0  # epochs past every curve's end have no models
        n = sums["count"][present]
        low, median, high = _quantiles(sums["histogram"][present], (BAND[0], 0.5, BAND[1]))
        return {
            "epoch": self.grids[group][present] + 1, "n": n, "mean": sums["total"][present] / n,
            "least": sums["least"][present], "q10": low, "median": median, "q90": high,
            "largest": sums["largest"][present],
        }  # fmt: skip


def _quantiles(histogram: np.ndarray, shares: Sequence[float]) -> list[np.ndarray]:
    """Quantiles per histogram row, linear inside the bin that holds them."""
    n = histogram.sum(axis=1)
    cumulative = np.cumsum(histogram, axis=1)
    rows = np.arange(len(histogram))
    out = []
    for share in shares:
        target = share * n
        bins = np.minimum((cumulative < target[:, None]).sum(axis=1), _BIN_COUNT - 1)
        inside = histogram[rows, bins]
        below = cumulative[rows, bins] - inside
        fraction = np.clip((target - below) / np.maximum(inside, 1), 0.0, 1.0)
        low, high = _BIN_EDGES[bins], _BIN_EDGES[bins + 1]
        out.append(np.where(n > 0, low + fraction * (high - low), np.nan))
    return out


SLOPE_POINTS = 40  # log-spaced epochs at which every model's loss is kept for the slope curve


def slope_epochs(lengths: Sequence[int], epoch: int) -> np.ndarray:
    """The 1-based epochs at which every model's loss is kept: log-spaced, run ends, `epoch`."""
    longest = max([int(n) for n in lengths] + [1])
    points = np.rint(np.geomspace(1, longest, SLOPE_POINTS)).astype(np.int64)
    ends = [int(n) for n in lengths if n > 0]
    ends += [min(epoch, n) for n in ends]
    return np.unique(np.concatenate([points, np.asarray(ends, np.int64)]))


class PerModel:
    """Per model: its loss at `epochs` and its first epoch below the baseline (0: none; NaN).

    Rows are written by position, so threads reading different files may share it.
    """

    def __init__(self, size: int, epochs: np.ndarray, baseline: np.ndarray) -> None:
        self.epochs = epochs
        self.loss = np.full((size, len(epochs)), np.nan, dtype=np.float32)
        self.baseline = baseline
        self.first_below = np.full(size, np.nan)

    def add(self, rows: np.ndarray, matrix: np.ndarray) -> None:
        """Record the curves `matrix` (models x epochs) of the models at positions `rows`."""
        inside = self.epochs <= matrix.shape[1]
        self.loss[np.ix_(rows, np.flatnonzero(inside))] = matrix[:, self.epochs[inside] - 1]
        baseline = self.baseline[rows]
        with np.errstate(invalid="ignore"):
            below = matrix < baseline[:, None]  # in float64; a NaN loss never beats it
        first = np.where(below.any(axis=1), below.argmax(axis=1) + 1, 0).astype(np.float64)
        self.first_below[rows] = np.where(np.isfinite(baseline), first, np.nan)

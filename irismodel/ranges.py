"""Sets of integers written as ranges, `8..14` or `0, 3, 7..9`: seeds and hidden dims, compactly."""

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Self

import numpy as np

_ITEM = re.compile(r"\s*(-?[0-9]+)\s*(?:\.\.\s*(-?[0-9]+)\s*)?")


@dataclass(frozen=True)
class IntRanges:
    """Integers as sorted, disjoint half-open `(start, stop)` ranges: `0..999999` is one pair."""

    ranges: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, values: Iterable[int]) -> Self:
        """Return the set of distinct `values`; a `range` stays one pair."""
        if isinstance(values, range) and values.step == 1:
            return cls(((values.start, values.stop),) if len(values) else ())
        return cls(_merge(sorted((v, v + 1) for v in values)))

    def count(self) -> int:
        """Return how many values there are (`len` cannot say past sys.maxsize)."""
        return sum(stop - start for start, stop in self.ranges)

    __len__ = count

    def __iter__(self) -> Iterator[int]:
        for start, stop in self.ranges:
            yield from range(start, stop)

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def take(self, start: int, stop: int) -> list[int]:
        """Return the values at sorted positions `start..stop-1`, without expanding the others."""
        out: list[int] = []
        offset = 0
        for low, high in self.ranges:
            size = high - low  # a range outside start..stop-1 adds nothing
            out.extend(range(low + max(start - offset, 0), low + min(stop - offset, size)))
            offset += size
            if offset >= stop:
                break
        return out

    def text(self) -> str:
        """Return the canonical text: `8..14`, `0, 3, 7..9`."""
        return ", ".join(
            str(start) if stop - start == 1 else f"{start}..{stop - 1}"
            for start, stop in self.ranges
        )

    __str__ = text


def _merge(pairs: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[tuple[int, int]] = []
    for start, stop in pairs:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        else:
            merged.append((start, stop))
    return tuple(merged)


def _check_bounds(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name}: {value} is out of range; allowed are {low}..{high}")


def parse_ranges(name: str, value: object, low: int, high: int, max_count: int) -> IntRanges:
    """Return the set `value` names (text `0, 3, 7..9`, a list, an `IntRanges`), else ValueError."""
    allowed = f"allowed are {low}..{high}"
    if isinstance(value, IntRanges):
        pairs = list(value.ranges)
        for start, stop in pairs:
            for bound in (start, stop - 1):
                _check_bounds(name, bound, low, high)
    elif isinstance(value, str):
        pairs = []
        text = value.strip()
        if not text:
            raise ValueError(
                f"{name}: must not be empty; give integers or ranges like 8..14 ({allowed})"
            )
        for item in text.split(","):
            match = _ITEM.fullmatch(item)
            if match is None:
                raise ValueError(
                    f"{name}: {item.strip()!r} is not an integer or a range like 8..14; {allowed}"
                )
            start = int(match.group(1))
            stop = int(match.group(2) or start)
            for bound in (start, stop):
                _check_bounds(name, bound, low, high)
            if stop < start:
                raise ValueError(f"{name}: the range {start}..{stop} is empty; write it low..high")
            pairs.append((start, stop + 1))
    elif isinstance(value, list | tuple | range):
        pairs = []
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int | np.integer):
                raise ValueError(f"{name}: {item!r} is not an integer; {allowed}")
            _check_bounds(name, int(item), low, high)
            pairs.append((int(item), int(item) + 1))
    else:
        raise ValueError(
            f"{name}: expected integers as text (8..14 or 0, 3, 7..9) or a list, got {value!r}"
        )
    if not pairs:
        raise ValueError(f"{name}: must not be empty; give at least one integer in {low}..{high}")
    pairs.sort()
    # sorted by start, two ranges share a value only if some neighbours do
    if repeated := [b[0] for a, b in zip(pairs, pairs[1:], strict=False) if b[0] < a[1]]:
        shown = sorted(set(repeated))[:10]
        raise ValueError(f"{name}: duplicate value(s) {shown}; each may appear once")
    result = IntRanges(_merge(pairs))
    if result.count() > max_count:
        raise ValueError(
            f"{name}: {result.count():,} values; at most {max_count:,} are allowed in one sweep"
        )
    return result

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
        return ", ".join(str(lo) if hi - lo == 1 else f"{lo}..{hi - 1}" for lo, hi in self.ranges)

    __str__ = text


def _merge(pairs: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[tuple[int, int]] = []
    for start, stop in pairs:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        else:
            merged.append((start, stop))
    return tuple(merged)


def parse_ranges(name: str, value: object, low: int, high: int, max_count: int) -> IntRanges:
    """Return the set `value` names (text `0, 3, 7..9`, a list, an `IntRanges`), else ValueError."""
    allowed = f"allowed are {low}..{high}"
    pairs: list[tuple[int, int]] = []

    def add(first: int, last: int) -> None:
        for bound in (first, last):
            if not low <= bound <= high:
                raise ValueError(f"{name}: {bound} is out of range; {allowed}")
        pairs.append((first, last + 1))

    if isinstance(value, IntRanges):
        for start, stop in value.ranges:
            add(start, stop - 1)
    elif isinstance(value, str):
        if not value.strip():
            raise ValueError(
                f"{name}: must not be empty; give integers or ranges like 8..14 ({allowed})"
            )
        for item in value.split(","):
            match = _ITEM.fullmatch(item)
            if match is None:
                raise ValueError(
                    f"{name}: {item.strip()!r} is not an integer or a range like 8..14; {allowed}"
                )
            start = int(match.group(1))
            stop = int(match.group(2) or start)
            add(start, stop)
            if stop < start:
                raise ValueError(f"{name}: the range {start}..{stop} is empty; write it low..high")
    elif isinstance(value, list | tuple | range):
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int | np.integer):
                raise ValueError(f"{name}: {item!r} is not an integer; {allowed}")
            add(int(item), int(item))
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

"""Integer sets as ranges: parsing text and lists, positions, and errors that name the parameter."""

import pytest

from irismodel.ranges import IntRanges, parse_ranges


def test_text_and_lists_give_the_same_set():
    """`0..3, 7, 9..10`, the same values as a list in any order, and a range are one set."""
    text = parse_ranges("seeds", "0..3, 7, 9..10", 0, 100, 1000)
    listed = parse_ranges("seeds", [10, 9, 7, 3, 2, 1, 0], 0, 100, 1000)
    assert text == listed and list(text) == [0, 1, 2, 3, 7, 9, 10]
    assert text.text() == "0..3, 7, 9..10" and len(text) == 7
    assert IntRanges.of(range(5, 9)) == parse_ranges("seeds", "5..8", 0, 100, 1000)


def test_take_returns_positions_without_expanding_the_rest():
    """`take(a, b)` gives the values at sorted positions a..b-1, across ranges."""
    values = parse_ranges("seeds", "0..3, 7, 9..10, 50..1000000", 0, 10**7, 10**7)
    assert values.take(2, 6) == [2, 3, 7, 9]
    assert values.take(6, 9) == [10, 50, 51]
    assert len(values) == 7 + 999951
    assert values.take(0, 8) == [0, 1, 2, 3, 7, 9, 10, 50]


def test_a_million_listed_seeds_with_one_repeat_is_found_in_linear_time():
    """A long list with one repeated value is refused, naming the value (sorted, not pairwise)."""
    values = list(range(1_000_000)) + [123_456]
    with pytest.raises(ValueError, match=r"seeds: duplicate value\(s\) \[123456\]"):
        parse_ranges("seeds", values, 0, 2**63 - 1, 10_000_000)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", r"seeds: must not be empty"),
        ([], r"seeds: must not be empty"),
        ("5..2", r"seeds: the range 5\.\.2 is empty"),
        ("1, x", r"seeds: 'x' is not an integer or a range like 8\.\.14"),
        ([1, True], r"seeds: True is not an integer"),
        ([1.5], r"seeds: 1\.5 is not an integer"),
        ("-1..3", r"seeds: -1 is out of range; allowed are 0\.\.100"),
        ("0..101", r"seeds: 101 is out of range"),
        ("0..50, 40..60", r"seeds: duplicate value\(s\) \[40\]"),
        ("0..100", r"seeds: 101 values; at most 50 are allowed"),
        (3.0, r"seeds: expected integers as text"),
    ],
)
def test_bad_values_are_refused_by_name(value, message):
    """Every bad value is a ValueError naming the parameter and what is allowed."""
    with pytest.raises(ValueError, match=message):
        parse_ranges("seeds", value, 0, 100, 50)


def test_a_range_too_long_to_count_with_len_is_refused_by_its_bound():
    """A range of 2**63 values is refused by the bound, not by an OverflowError."""
    with pytest.raises(ValueError, match=r"seeds: 9,223,372,036,854,775,808 values; at most"):
        parse_ranges("seeds", "0..9223372036854775807", 0, 2**63 - 1, 10_000_000)

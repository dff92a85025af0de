"""Durations as SEMANTICS.md "Conventions" defines them: seconds, timedelta, "<number> <unit>"."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from dynamic_workflows.sdk import InvalidDurationError, parse_duration

DAY = 86400.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (5, 5.0),
        (2.5, 2.5),
        (timedelta(minutes=2), 120.0),
        (timedelta(0), 0.0),
        ("30.5 seconds", 30.5),
        ("1 second", 1.0),
        ("1 hour", 3600.0),
        ("2 hours", 7200.0),
        ("2 days", 2 * DAY),
        ("1 day", DAY),
        ("1   hour", 3600.0),
        ("250 ms", 0.25),
        ("1 millisecond", 0.001),
        ("3 milliseconds", 0.003),
        ("1 minute", 60.0),
        ("10 minutes", 600.0),
        ("1 week", 7 * DAY),
        ("2 weeks", 14 * DAY),
        ("1 month", 30 * DAY),
        ("2 months", 60 * DAY),
        ("1 year", 365.25 * DAY),
        ("2 years", 2 * 365.25 * DAY),
        ("0 seconds", 0.0),
    ],
)
def test_valid_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [
        "1second",
        "5 fortnights",
        "abc",
        "",
        "seconds",
        "1",
        "-1 second",
        "1 hour ago",
        -1,
        -0.5,
        timedelta(seconds=-1),
        math.nan,
        math.inf,
        -math.inf,
        float("nan"),
        True,
        None,
        [1],
        {"seconds": 1},
    ],
)
def test_invalid_durations(value: object) -> None:
    with pytest.raises(InvalidDurationError):
        parse_duration(value)


def test_invalid_duration_is_a_value_error() -> None:
    # callers catch it and turn it into their own typed error
    assert issubclass(InvalidDurationError, ValueError)

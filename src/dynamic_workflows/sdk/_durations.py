"""Durations as SEMANTICS.md defines them: seconds, ``timedelta`` or ``"<number> <unit>"``."""

from __future__ import annotations

import math
import re
from datetime import timedelta

Duration = int | float | str | timedelta

_UNITS = {
    "millisecond": 0.001,
    "ms": 0.001,
    "second": 1.0,
    "minute": 60.0,
    "hour": 3600.0,
    "day": 86400.0,
    "week": 7 * 86400.0,
    "month": 30 * 86400.0,
    "year": 365.25 * 86400.0,
}
_PATTERN = re.compile(r"^([0-9]+(?:\.[0-9]+)?|\.[0-9]+) +([a-z]+)$")


class InvalidDurationError(ValueError):
    """The value is not a duration; callers turn it into their own typed error."""


def parse_duration(value: object) -> float:
    """Seconds in ``value``; raises :class:`InvalidDurationError` for anything else."""
    if isinstance(value, bool):
        raise InvalidDurationError(f"invalid duration: {value!r}")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _PATTERN.match(value)
        if match is None:
            raise InvalidDurationError(f"invalid duration: {value!r}")
        number, word = match.groups()
        unit = word if word in _UNITS else word.removesuffix("s")
        if unit not in _UNITS or (unit == "ms" and word != "ms"):
            raise InvalidDurationError(f"invalid duration: {value!r}")
        seconds = float(number) * _UNITS[unit]
    else:
        raise InvalidDurationError(f"invalid duration: {value!r}")
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        raise InvalidDurationError(f"invalid duration: {value!r}")
    return seconds

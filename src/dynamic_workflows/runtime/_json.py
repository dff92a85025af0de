"""JSON text for the store: orjson when it can, the stdlib for what orjson refuses.

Values reaching the engine through step ops are untrusted: :func:`check_plain` accepts only
plain JSON (the sdk's encoded form) before anything is dumped, because orjson would quietly
turn a NaN into ``null`` or a ``datetime`` into a string.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

MAX_DEPTH = 128


class NotPlainJSON(ValueError):
    """A value from a step op is not plain JSON."""


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode("utf-8")
    except (TypeError, orjson.JSONEncodeError):
        # Integers beyond 64 bits; the stdlib handles them (up to its digit limit).
        try:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as error:
            raise NotPlainJSON(str(error)) from None


def loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def check_plain(value: Any, depth: int = 0) -> None:
    """Raise :class:`NotPlainJSON` unless ``value`` is None, bool, int, finite float, str,
    list or str-keyed dict, nested at most ``MAX_DEPTH`` levels."""
    if depth > MAX_DEPTH:
        raise NotPlainJSON(f"nested deeper than {MAX_DEPTH} levels")
    kind = type(value)
    if value is None or kind is bool or kind is int or kind is str:
        return
    if kind is float:
        if math.isnan(value) or math.isinf(value):
            raise NotPlainJSON("float is not finite")
        return
    if kind is list:
        for item in value:
            check_plain(item, depth + 1)
        return
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise NotPlainJSON("dict key is not a str")
            check_plain(item, depth + 1)
        return
    raise NotPlainJSON(f"{kind.__name__} is not a JSON value")

"""Values that cross the durable boundary: JSON, plus ``bytes`` by value [beyond].

On every wire and in the store a value is plain JSON: ``bytes`` become ``{"$bytes": b64}``
and a user dict whose only key starts with ``$`` is wrapped as ``{"$esc": {...}}`` so that
single-``$``-key dicts stay reserved for markers such as the channel's ``{"$cap": n}``.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

JSONValue = Any  # None | bool | int | float | str | list[JSONValue] | dict[str, JSONValue]

MAX_DEPTH = 64


class NotJSONError(TypeError):
    """A value is not JSON (or too deeply nested); ``path`` says where."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def encode_value(value: Any, *, allow_bytes: bool = True, path: str = "value") -> JSONValue:
    """Check ``value`` is JSON (or bytes) and return its tagged plain-JSON form."""
    return _encode(value, allow_bytes, path, 0)


def _encode(value: Any, allow_bytes: bool, path: str, depth: int) -> JSONValue:
    if depth > MAX_DEPTH:
        raise NotJSONError(path, f"nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise NotJSONError(path, "float is not finite")
        return float(value)
    if isinstance(value, bytes | bytearray | memoryview) and allow_bytes:
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, list | tuple):
        return [_encode(v, allow_bytes, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out: dict[str, JSONValue] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise NotJSONError(path, f"dict key {k!r} is not a str")
            out[k] = _encode(v, allow_bytes, f"{path}.{k}", depth + 1)
        if len(out) == 1 and next(iter(out)).startswith("$"):
            return {"$esc": out}
        return out
    raise NotJSONError(path, f"{type(value).__name__} is not a JSON value")


def decode_value(value: JSONValue) -> Any:
    """Inverse of :func:`encode_value` (the input is trusted to be plain JSON)."""
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, inner),) = value.items()
            if key == "$bytes" and isinstance(inner, str):
                return base64.b64decode(inner)
            if key == "$esc" and isinstance(inner, dict):
                return {k: decode_value(v) for k, v in inner.items()}
        return {k: decode_value(v) for k, v in value.items()}
    return value


def json_size(value: JSONValue) -> int:
    """Bytes of the compact UTF-8 JSON form of an already encoded value."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))

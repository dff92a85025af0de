"""Values crossing the durable boundary: JSON plus bytes, escaping, rejection with a path."""

from __future__ import annotations

import base64
import math
from typing import Any

import pytest

from dynamic_workflows.sdk import NotJSONError, decode_value, encode_value, json_size


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -7,
        2**70,
        1.5,
        "",
        "héllo ✓",
        [],
        {},
        [1, "a", None, [2, {"b": 3.25}]],
        {"a": {"b": [1, 2, {"c": None}]}, "d": "e"},
    ],
)
def test_json_values_round_trip_unchanged(value: Any) -> None:
    encoded = encode_value(value)
    assert encoded == value
    assert decode_value(encoded) == value


def test_tuple_becomes_list() -> None:
    assert encode_value((1, (2, 3))) == [1, [2, 3]]


def test_bytes_are_a_superset_by_value() -> None:
    raw = b"\x00\xffbinary"
    encoded = encode_value(raw)
    assert encoded == {"$bytes": base64.b64encode(raw).decode("ascii")}
    assert decode_value(encoded) == raw
    assert decode_value(encode_value(bytearray(b"ab"))) == b"ab"
    nested = {"blob": b"x", "list": [b"y"]}
    assert decode_value(encode_value(nested)) == {"blob": b"x", "list": [b"y"]}


def test_bytes_can_be_refused() -> None:
    with pytest.raises(NotJSONError) as info:
        encode_value({"p": b"x"}, allow_bytes=False, path="params")
    assert info.value.path == "params.p"


@pytest.mark.parametrize(
    "value",
    [
        {"$bytes": "not-really-bytes"},
        {"$cap": 3},
        {"$esc": {"a": 1}},
        {"$": None},
    ],
)
def test_single_dollar_key_dicts_are_escaped_and_come_back(value: dict[str, Any]) -> None:
    encoded = encode_value(value)
    assert encoded == {"$esc": value}
    assert decode_value(encoded) == value


def test_escaping_applies_at_any_depth_and_only_to_single_dollar_keys() -> None:
    value = {"outer": [{"$cap": 1}], "$two": 1, "three": 3}
    encoded = encode_value(value)
    assert encoded == {"outer": [{"$esc": {"$cap": 1}}], "$two": 1, "three": 3}
    assert decode_value(encoded) == value
    plain = {"a$": 1}
    assert encode_value(plain) == plain


class _Thing:
    pass


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({1, 2}, "value"),
        (_Thing(), "value"),
        ({"a": [1, _Thing()]}, "value.a[1]"),
        ({"a": {"b": math.nan}}, "value.a.b"),
        ([math.inf], "value[0]"),
        ({"a": {1: "int key"}}, "value.a"),
        ({"a": 1j}, "value.a"),
    ],
)
def test_non_json_is_rejected_with_a_path(value: Any, path: str) -> None:
    with pytest.raises(NotJSONError) as info:
        encode_value(value)
    assert info.value.path == path
    assert str(info.value).startswith(f"{path}: ")
    assert isinstance(info.value, TypeError)


def test_custom_root_path_names_the_field() -> None:
    with pytest.raises(NotJSONError) as info:
        encode_value({"x": object()}, path='the step "load"')
    assert info.value.path == 'the step "load".x'


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def test_depth_limit() -> None:
    assert decode_value(encode_value(_nested(50))) == _nested(50)
    with pytest.raises(NotJSONError) as info:
        encode_value(_nested(200))
    assert "nested deeper than" in info.value.reason


def test_json_size_is_compact_utf8() -> None:
    assert json_size({"a": [1, 2]}) == len('{"a":[1,2]}')
    assert json_size("é") == len('"é"'.encode())

"""The frame codec: typed messages, size and depth limits, and a fuzzed decoder."""

from __future__ import annotations

import contextlib
import pickle
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamic_workflows.rpc import (
    HEADER,
    Call,
    Cancel,
    Error,
    FrameTooLargeError,
    Log,
    ProtocolError,
    Release,
    Result,
    decode_frame,
    encode_frame,
)


def body_of(frame: bytes) -> bytes:
    (length,) = HEADER.unpack_from(frame)
    assert length == len(frame) - 4
    return frame[4:]


def test_every_message_round_trips() -> None:
    messages: list[tuple[dict[str, Any], type]] = [
        ({"t": "call", "id": 1, "cap": 0, "method": "do_begin", "args": ["a", 1, {}]}, Call),
        ({"t": "result", "id": 1, "value": {"action": "value", "value": [1, "x"]}}, Result),
        ({"t": "error", "id": 2, "name": "ValueError", "message": "bad"}, Error),
        ({"t": "cancel", "id": 3}, Cancel),
        ({"t": "release", "cap": 4, "count": 2}, Release),
        ({"t": "log", "stream": "stdout", "line": "hi", "instance_id": "i", "ts": 1.5}, Log),
    ]
    for message, kind in messages:
        frame = decode_frame(body_of(encode_frame(message)))
        assert isinstance(frame, kind)
    call = decode_frame(body_of(encode_frame(messages[0][0])))
    assert isinstance(call, Call)
    assert (call.method, call.args, call.kwargs, call.caps) == ("do_begin", ["a", 1, {}], {}, [])


def test_bytes_and_dataclasses_encode_as_json() -> None:
    frame = decode_frame(body_of(encode_frame({"t": "result", "id": 1, "value": b"\x00\xff"})))
    assert isinstance(frame, Result)
    assert frame.value == {"$bytes": "AP8="}


def test_encoder_refuses_non_json_and_oversized() -> None:
    with pytest.raises(TypeError):
        encode_frame({"t": "result", "id": 1, "value": object()})
    with pytest.raises(FrameTooLargeError) as info:
        encode_frame({"t": "result", "id": 1, "value": "x" * 2000}, max_frame=1000)
    assert info.value.limit == 1000
    assert info.value.size > 1000


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"t": "call"}',
        b'{"t": "nope", "id": 1}',
        b'{"t": "call", "id": 1, "cap": 0, "method": "__class__"}',
        b'{"t": "call", "id": 1, "cap": 0, "method": "_private"}',
        b'{"t": "call", "id": -1, "cap": 0, "method": "x"}',
        b'{"t": "call", "id": 1, "cap": 0, "method": "x", "extra": 1}',
        b'{"t": "call", "id": "1", "cap": 0, "method": "x"}',
        b'{"t": "result", "id": 1, "caps": ["a"]}',
        b'{"t": "log", "stream": "evil", "line": "x"}',
        b'{"t": "release", "cap": 1, "count": 0}',
        pickle.dumps({"t": "cancel", "id": 1}),
    ],
)
def test_malformed_frames_are_protocol_errors(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_frame(body)


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def test_depth_limit() -> None:
    ok = orjson.dumps({"t": "result", "id": 1, "value": nested(8)})
    assert isinstance(decode_frame(ok, max_depth=8), Result)
    deep = orjson.dumps({"t": "result", "id": 1, "value": nested(9)})
    with pytest.raises(ProtocolError, match="deeper than 8"):
        decode_frame(deep, max_depth=8)
    deep_args = orjson.dumps({"t": "call", "id": 1, "cap": 0, "method": "m", "args": nested(9)})
    with pytest.raises(ProtocolError):
        decode_frame(deep_args, max_depth=8)
    # Far beyond any parser's own recursion limit: still a clean ProtocolError.
    with pytest.raises(ProtocolError):
        decode_frame(b'{"t":"result","id":1,"value":' + b"[" * 100_000 + b"]" * 100_000 + b"}")


def test_wide_but_shallow_values_pass() -> None:
    body = orjson.dumps({"t": "result", "id": 1, "value": [[i] for i in range(1000)]})
    frame = decode_frame(body, max_depth=4)
    assert isinstance(frame, Result)
    assert len(frame.value) == 1000


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_fuzz_random_bytes_never_escape_as_other_errors(body: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_frame(body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["t", "id", "cap", "method", "args", "kwargs", "value", "caps", "name"]),
        json_values | st.sampled_from(["call", "result", "error", "cancel", "release", "log"]),
    )
)
def test_fuzz_random_json_messages_are_typed_or_refused(message: dict[str, Any]) -> None:
    try:
        body = orjson.dumps(message)
    except orjson.JSONEncodeError:
        return  # integers beyond 64 bits: not something a peer can send either
    try:
        frame = decode_frame(body, max_depth=16)
    except ProtocolError:
        return
    assert isinstance(frame, Call | Result | Error | Cancel | Release | Log)

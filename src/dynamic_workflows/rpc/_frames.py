"""Frames: a 4-byte big-endian length, then one JSON message.

Messages are tagged msgspec Structs, so a frame from the untrusted side is parsed and
type-checked in one pass; the free-form parts (``args``, ``kwargs``, ``value``) are then held
to a maximum nesting depth. The length is checked before the body is read.

Why msgspec to decode and orjson to encode: msgspec validates typed messages as fast as
orjson parses; orjson's ``default`` hook lets the sender swap capability objects for
``{"$cap": n}`` while serialising, at no cost for frames without any. pydantic was dropped:
2–4× slower per frame and slow to import inside every isolate.
"""

from __future__ import annotations

import base64
import dataclasses
import struct
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
import orjson

from ._errors import FrameTooLargeError, ProtocolError

MAX_FRAME = 4 << 20
"""Default maximum body size in bytes."""
MAX_TRUSTED_FRAME = 1 << 30
"""What the guest accepts from the host (trusted): a long run's journal can be large."""
MAX_DEPTH = 64
"""Default maximum nesting of lists and objects inside one message's values."""
HEADER = struct.Struct(">I")

_Id = Annotated[int, msgspec.Meta(ge=0, le=(1 << 53))]
_Method = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")]
_Short = Annotated[str, msgspec.Meta(max_length=256)]


class Call(msgspec.Struct, tag="call", tag_field="t", forbid_unknown_fields=True):
    """Call ``method`` on the receiver's capability ``cap``; answered by Result or Error."""

    id: _Id
    cap: _Id
    method: _Method
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    caps: list[_Id] = []
    """Ids of the sender's capabilities referenced as ``{"$cap": n}`` inside the arguments."""


class Result(msgspec.Struct, tag="result", tag_field="t", forbid_unknown_fields=True):
    id: _Id
    value: Any = None
    caps: list[_Id] = []


Limit = Literal["memory", "cpu", "wall", "stack"]


class Error(msgspec.Struct, tag="error", tag_field="t", forbid_unknown_fields=True):
    id: _Id
    name: _Short
    message: Annotated[str, msgspec.Meta(max_length=64 * 1024)]
    limit: Limit | None = None
    """Which limit an ``IsolateLimitError`` names (its ``.limit``)."""


class Cancel(msgspec.Struct, tag="cancel", tag_field="t", forbid_unknown_fields=True):
    """The sender no longer waits for its call ``id``."""

    id: _Id


class Release(msgspec.Struct, tag="release", tag_field="t", forbid_unknown_fields=True):
    """The sender dropped ``count`` references to the receiver's capability ``cap``."""

    cap: _Id
    count: Annotated[int, msgspec.Meta(ge=1, le=(1 << 53))] = 1


class Log(msgspec.Struct, tag="log", tag_field="t", forbid_unknown_fields=True):
    """One captured output line of guest code."""

    stream: Annotated[str, msgspec.Meta(pattern=r"^(stdout|stderr|log)$")]
    line: str
    instance_id: _Short | None = None
    ts: float = 0.0


Frame = Call | Result | Error | Cancel | Release | Log

_decoder = msgspec.json.Decoder(Frame)


def _depth_within(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > limit:
                return False
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            if depth > limit:
                return False
            stack.extend((child, depth + 1) for child in item)
    return True


def decode_frame(body: bytes, *, max_depth: int = MAX_DEPTH) -> Frame:
    """Parse and validate one frame body; any defect is a :class:`ProtocolError`."""
    try:
        frame: Frame = _decoder.decode(body)
    except (msgspec.DecodeError, RecursionError) as error:
        raise ProtocolError(f"malformed frame: {str(error)[:200]}") from None
    # Cheap bound first: a body with no more brackets than the limit cannot nest deeper.
    if body.count(b"[") + body.count(b"{") > max_depth:
        payload: list[Any]
        if isinstance(frame, Call):
            payload = [frame.args, frame.kwargs]
        elif isinstance(frame, Result):
            payload = [frame.value]
        else:
            payload = []
        if not _depth_within(payload, max_depth + 1):
            raise ProtocolError(f"frame nests deeper than {max_depth} levels")
    return frame


def _plain_default(obj: Any) -> Any:
    if isinstance(obj, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(obj)).decode("ascii")}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    raise TypeError(f"{type(obj).__name__} is not a JSON value")


_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS


def encode_frame(
    message: dict[str, Any],
    *,
    max_frame: int = MAX_FRAME,
    default: Callable[[Any], Any] = _plain_default,
) -> bytes:
    """Header plus body of one message; :class:`FrameTooLargeError` when over the limit.

    ``default`` turns non-JSON objects into JSON (capabilities into references); it raises
    ``TypeError`` for anything it refuses.
    """
    body = orjson.dumps(message, default=default, option=_OPTIONS)
    if len(body) > max_frame:
        raise FrameTooLargeError(len(body), max_frame)
    return HEADER.pack(len(body)) + body


plain_default = _plain_default

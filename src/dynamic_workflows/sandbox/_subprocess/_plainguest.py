"""A minimal guest for the hostile battery and the benchmark: load one tenant module, call
its ``fetch``. It stands in for ``sandbox._guest`` (the RPC channel) where that is not the
point: its frames are 4-byte big-endian lengths and JSON.

Requests: ``{"op": "ping"}``, ``{"op": "load", "source": str}``,
``{"op": "fetch", "request": Request.to_wire()}``. Replies: ``{"ok": true, ...}`` or
``{"ok": false, "error": {"name", "message"}}``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import types
from typing import Any

from ...sdk import Request, Response, error_to_dict

MAX_FRAME = 16 << 20


def recv_frame(sock: socket.socket) -> bytes | None:
    head = _recv_exact(sock, 4)
    if head is None:
        return None
    (size,) = struct.unpack("!I", head)
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes")
    return _recv_exact(sock, size)


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def send_frame(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(struct.pack("!I", len(payload)) + payload)


def _handle(message: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    op = message.get("op")
    if op == "ping":
        return {"ok": True}
    if op == "load":
        module = types.ModuleType("index")
        exec(compile(str(message["source"]), "index.py", "exec"), module.__dict__)  # noqa: S102
        state["module"] = module
        return {"ok": True}
    if op == "fetch":
        request = Request.from_wire(message["request"])
        response = asyncio.run(state["module"].fetch(request, {}))
        if not isinstance(response, Response):
            raise TypeError("fetch() must return a Response")
        return {"ok": True, "response": response.to_wire()}
    raise ValueError(f"unknown op {op!r}")


def prepare() -> None:
    """Run the first call's code path once, before the host arrives."""
    json.dumps(_handle(json.loads(b'{"op": "ping"}'), {})).encode()


def serve(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    sock.setblocking(True)
    state: dict[str, Any] = {}
    while (frame := recv_frame(sock)) is not None:
        try:
            reply = _handle(json.loads(frame), state)
        except MemoryError:
            raise
        except Exception as exc:
            reply = {"ok": False, "error": error_to_dict(exc)}
        send_frame(sock, json.dumps(reply).encode())

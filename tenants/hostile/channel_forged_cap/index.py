"""Hostile tenant: a well-formed call on a capability id the host never handed out.

Writes straight to the isolate's own channel (fd 3), beside the guest runtime: the host must
treat the bytes as untrusted, close this isolate's channel at worst, and serve everyone else.
"""

from __future__ import annotations

import os
import select
import struct
from typing import Any

from dynamic_workflows.sdk import Request, Response

CHANNEL_FD = 3


def _send(body: bytes, *, length: int | None = None) -> None:
    frame = struct.pack(">I", len(body) if length is None else length) + body
    view = memoryview(frame)
    while view:
        try:
            view = view[os.write(CHANNEL_FD, view) :]
        except BlockingIOError:  # the guest's socket is non-blocking: wait until writable
            select.select([], [CHANNEL_FD], [], 5)


async def fetch(request: Request, env: Any) -> Response:
    params = await request.json()
    attack(params)
    return Response.json({"escaped": False, "result": "host still talking"})


def attack(params: dict[str, Any]) -> None:
    _send(b'{"t": "call", "id": 4242, "cap": 987654, "method": "terminate", "args": []}')

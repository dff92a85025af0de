"""Hostile tenant: a pickle that, if the host ever unpickled it, would create a file.

Writes straight to the isolate's own channel (fd 3), beside the guest runtime: the host must
treat the bytes as untrusted, close this isolate's channel at worst, and serve everyone else.
"""

from __future__ import annotations

import os
import pickle
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


class _Payload:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def attack(params: dict[str, Any]) -> None:
    marker = os.path.join(params["fill_dir"], "host-unpickled-me")
    _send(pickle.dumps(_Payload(marker)))

"""Hostile tenant: ctypes mount(2) of a tmpfs (onto a scratch directory).

Reports what happened as JSON: ``escaped`` (the attack worked) and ``result``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
from typing import Any

from dynamic_workflows.sdk import Request, Response


def _blocked(exc: BaseException) -> dict[str, Any]:
    code = getattr(exc, "errno", None)
    name = errno.errorcode.get(code, "") if isinstance(code, int) else ""
    return {"escaped": False, "result": f"{type(exc).__name__} {name}".strip(), "detail": str(exc)}


async def fetch(request: Request, env: Any) -> Response:
    params = await request.json()
    try:
        result = attack(params)
    except (OSError, socket.gaierror) as exc:
        return Response.json(_blocked(exc))
    return Response.json(result)


def attack(params: dict[str, Any]) -> dict[str, Any]:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    target = params["mount_dir"].encode()
    if libc.mount(b"none", target, b"tmpfs", 0, None) < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    libc.umount2(target, 0)
    return {"escaped": True, "result": "mounted a tmpfs"}

"""Hostile tenant: attach to the host (or another isolate) with ptrace(PTRACE_SEIZE).

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


PTRACE_SEIZE = 0x4206
PTRACE_DETACH = 17


def attack(params: dict[str, Any]) -> dict[str, Any]:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    libc.ptrace.restype = ctypes.c_long
    pid = params["ptrace_pid"]
    if libc.ptrace(PTRACE_SEIZE, pid, None, None) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    libc.ptrace(PTRACE_DETACH, pid, None, None)
    return {"escaped": True, "result": f"attached to pid {pid}"}

"""Hostile tenant: raw syscall(SYS_ptrace, PTRACE_SEIZE, victim).

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
    pid = params["ptrace_pid"]
    if libc.syscall(101, 0x4206, pid, 0, 0) < 0:  # PTRACE_SEIZE, without libc's wrapper
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    libc.syscall(101, 17, pid, 0, 0)  # PTRACE_DETACH
    return {"escaped": True, "result": f"attached to pid {pid}"}

"""Hostile tenant: use file descriptors inherited from the host or the zygote.

Reports what happened as JSON: ``escaped`` (the attack worked) and ``result``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import stat
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


def _own_loop_fds() -> set[int]:
    """The fds this isolate's own event loop made after start (selector, self-pipe)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return set()
    own = set()
    for name in ("_selector", "_ssock", "_csock"):
        obj = getattr(loop, name, None)
        with contextlib.suppress(Exception):
            own.add(obj.fileno())  # type: ignore[union-attr]
    return own


def attack(params: dict[str, Any]) -> dict[str, Any]:
    found = []
    own = _own_loop_fds()
    for fd in range(4, 4096):
        if fd in own:
            continue
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        found.append(f"{fd}:{stat.filemode(st.st_mode)[0]}")
    if found:
        return {"escaped": True, "result": f"open fds {found[:8]}"}
    return {"escaped": False, "result": "only fds 0-3 open"}

"""Hostile tenant: fork repeatedly (each child exits at once).

Reports what happened as JSON: ``escaped`` (the attack worked) and ``result``.
"""

from __future__ import annotations

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
    forked = 0
    try:
        for _ in range(params["forks"]):
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
            forked += 1
    except OSError as exc:
        if forked == 0:
            raise
        return {"escaped": True, "result": f"forked {forked} then {exc}"}
    return {"escaped": True, "result": f"forked {forked}"}

"""Hostile tenant: signal every process it can find (pids 1..pid_max).

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
    # kill(-1, sig) reports success even when every target refused, so probe each pid.
    me, reached, error = os.getpid(), [], None
    for pid in range(1, params.get("pid_max", 32768) + 1):
        if pid == me:
            continue
        try:
            os.kill(pid, 0)
            reached.append(pid)
        except OSError as exc:
            if error is None or exc.errno != errno.ESRCH:
                error = exc
    if reached:
        return {"escaped": True, "result": f"could signal {len(reached)} processes"}
    assert error is not None
    raise error

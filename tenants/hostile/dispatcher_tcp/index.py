"""Hostile tenant: connect to the dispatcher's TCP listener on 127.0.0.1.

Reports what happened as JSON: ``escaped`` (the attack worked) and ``result``.
"""

from __future__ import annotations

import errno
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
    with socket.create_connection(("127.0.0.1", params["dispatcher_port"]), timeout=5):
        return {"escaped": True, "result": "connected"}

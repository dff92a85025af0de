"""Hostile tenant: create files: in the host's temp dir, /tmp, and the Python installation.

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
    written, errors = [], []
    for directory in params["write_dirs"]:
        path = os.path.join(directory, "hostile-was-here")
        try:
            with open(path, "w") as f:
                f.write("pwned")
            written.append(path)
        except OSError as exc:
            errors.append(_blocked(exc)["result"])
    if written:
        return {"escaped": True, "result": f"wrote {written}"}
    return {"escaped": False, "result": sorted(set(errors))[0] if errors else "nothing to try"}

"""Hostile tenant: fill the disk: write many MiB into the host's temp dir.

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
    path = os.path.join(params["fill_dir"], "fill.bin")
    chunk = b"\0" * (1 << 20)
    written = 0
    with open(path, "wb") as f:
        for _ in range(params["fill_mib"]):
            written += f.write(chunk)
            f.flush()
    return {"escaped": True, "result": f"wrote {written >> 20} MiB"}

"""A small ``Request``/``Response`` pair for tenant ``fetch`` handlers, JSON on the wire."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Request:
    method: str = "GET"
    url: str = "/"
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    async def json(self) -> Any:
        return json.loads(self.body or b"null")

    async def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def to_wire(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "url": self.url,
            "headers": dict(self.headers),
            "body": base64.b64encode(self.body).decode("ascii"),
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Request:
        return cls(
            method=str(data.get("method", "GET")),
            url=str(data.get("url", "/")),
            headers={str(k): str(v) for k, v in dict(data.get("headers") or {}).items()},
            body=base64.b64decode(str(data.get("body") or "")),
        )


@dataclass
class Response:
    body: bytes | str = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        merged = {"content-type": "application/json", **(headers or {})}
        return cls(json.dumps(data).encode("utf-8"), status, merged)

    def body_bytes(self) -> bytes:
        return self.body.encode("utf-8") if isinstance(self.body, str) else bytes(self.body)

    def to_wire(self) -> dict[str, Any]:
        return {
            "status": int(self.status),
            "headers": {str(k): str(v) for k, v in self.headers.items()},
            "body": base64.b64encode(self.body_bytes()).decode("ascii"),
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Response:
        return cls(
            body=base64.b64decode(str(data.get("body") or "")),
            status=int(data.get("status", 200)),
            headers={str(k): str(v) for k, v in dict(data.get("headers") or {}).items()},
        )

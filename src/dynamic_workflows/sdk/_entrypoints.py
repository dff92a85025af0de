"""Base classes for workflow and worker entrypoints, shaped like Cloudflare's."""

from __future__ import annotations

from typing import Any

from ._http import Request, Response
from ._step import WorkflowStep
from ._types import WorkflowEvent


class WorkflowEntrypoint:
    """Subclass and define ``async def run(self, event, step)``.

    ``ctx`` describes the execution (the host's, not the tenant's secrets: a tenant's ctx
    never carries the dispatcher's metadata, S37); ``env`` holds the bindings.
    """

    def __init__(self, ctx: Any = None, env: Any = None) -> None:
        self.ctx = ctx
        self.env = env

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        raise NotImplementedError("a WorkflowEntrypoint must define run(event, step)")


class WorkerEntrypoint:
    """A named entrypoint with ``fetch(request)`` (and any other public async methods)."""

    def __init__(self, ctx: Any = None, env: Any = None) -> None:
        self.ctx = ctx
        self.env = env

    async def fetch(self, request: Request) -> Response:
        return Response("Not found", status=404)

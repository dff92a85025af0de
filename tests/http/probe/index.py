"""A tenant for the HTTP tests: echoes, prints, fails, spins, and runs a small workflow."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from dynamic_workflows.sdk import Request, Response, WorkflowEntrypoint, WorkflowEvent, WorkflowStep


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        who = await step.do(
            "greet", lambda: print(f"probe greets {event.payload.get('name')}") or "hi"
        )
        token = await step.do("secret", lambda: "s3cr3t", sensitive="output")
        if event.payload.get("wait", True):
            got = await step.wait_for_event("go", type="go", timeout="1 hour")
            return {"greeting": who, "go": got.payload, "token_len": len(token)}
        return {"greeting": who, "token_len": len(token)}


async def fetch(request: Request, env: Any) -> Response:
    path = urlsplit(request.url).path
    if path == "/echo":
        return Response.json(
            {
                "method": request.method,
                "url": request.url,
                "body": await request.text(),
                "header": request.headers.get("x-probe"),
            },
            headers={"x-probe-reply": "yes"},
        )
    if path == "/log":
        print("probe log line")
        return Response.json({"logged": True})
    if path == "/boom":
        raise RuntimeError("kaboom: internal detail")
    if path == "/spin":
        while True:
            pass
    if path == "/start":
        body = await request.json() if request.body else {}
        instance = await env.WORKFLOWS.create(params=body)
        return Response.json({"id": instance.id}, status=201)
    if path.startswith("/get/"):
        instance = await env.WORKFLOWS.get(path[5:])
        return Response.json(await instance.status())
    return Response("nothing here", status=404)

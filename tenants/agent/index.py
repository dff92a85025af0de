"""An agent: plan at run time, then execute one durable step per planned tool call.

The plan itself is a step, so it is produced once and replayed: the list of steps that
follows is decided at run time yet stays deterministic across restarts. A human can
review the plan before it runs (``wait_for_event("plan review")``) when asked to.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from planner import plan, run_tool

from dynamic_workflows.sdk import Request, Response, WorkflowEntrypoint, WorkflowEvent, WorkflowStep


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        params = event.payload or {}
        goal = str(params.get("goal", "compare 3 tea suppliers under 40 euros"))
        steps = await step.do("plan", lambda: plan(goal, int(params.get("max_steps", 6))))
        print(f"plan for {goal!r}: {[s['tool'] for s in steps]}")

        if params.get("review"):
            review = await step.wait_for_event("plan review", type="review", timeout="1 day")
            if not (isinstance(review.payload, dict) and review.payload.get("ok")):
                return {"goal": goal, "status": "plan rejected"}

        notes: list[str] = []
        for i, planned in enumerate(steps, start=1):
            tool, arg = planned["tool"], planned["input"]
            result = await step.do(
                f"{i}. {tool}",
                lambda tool=tool, arg=arg: run_tool(tool, arg, notes),
                retries={"limit": 2, "delay": "1 second"},
            )
            notes.append(str(result))
            print(f"{i}. {tool} -> {str(result)[:60]}")
        return {"goal": goal, "steps": len(steps), "answer": notes[-1] if notes else None}


async def fetch(request: Request, env: Any) -> Response:
    """``POST /tasks`` (body ``{"goal": "..."}``) starts an agent run; ``GET /tasks/<id>``
    shows it; ``POST /tasks/<id>/review`` (body ``{"ok": true}``) approves its plan."""
    parts = [p for p in urlsplit(request.url).path.split("/") if p]
    if request.method == "POST" and parts == ["tasks"]:
        body = await request.json() if request.body else {}
        if not isinstance(body, dict):
            return Response.json({"error": "the body must be a JSON object"}, status=400)
        instance = await env.WORKFLOWS.create(params=body)
        return Response.json({"id": instance.id}, status=201)
    if len(parts) >= 2 and parts[0] == "tasks":
        instance = await env.WORKFLOWS.get(parts[1])
        if request.method == "POST" and parts[2:] == ["review"]:
            await instance.send_event(type="review", payload=await request.json())
            return Response.json({"id": instance.id, "sent": "review"}, status=202)
        return Response.json(await instance.status())
    return Response.json({"error": "not found", "try": "POST /tasks"}, status=404)

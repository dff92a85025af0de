"""User onboarding: open an account, welcome the user, give them time, wait for approval.

Shows ``step.sleep`` and ``step.wait_for_event`` with a timeout: a manager approves (or
rejects) with an event; with no answer in time the account is closed again.
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlsplit

from dynamic_workflows.sdk import (
    NonRetryableError,
    Request,
    Response,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
    WorkflowTimeoutError,
)


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        user = event.payload or {}
        email = str(user.get("email", "")).strip().lower()
        name = str(user.get("name") or email.split("@")[0] or "there")

        def validate() -> dict[str, str]:
            if "@" not in email:
                raise NonRetryableError(f"not an email address: {email!r}")
            return {"email": email, "name": name}

        profile = await step.do("validate signup", validate)

        def open_account() -> dict[str, str]:
            account = "acct-" + hashlib.sha256(email.encode()).hexdigest()[:10]
            print(f"opened {account} for {email}")
            return {"account": account, "plan": str(user.get("plan", "free"))}

        account = await step.do("open account", open_account)

        def welcome() -> str:
            print(f"welcome mail to {profile['email']}: Hello {profile['name']}!")
            return "sent"

        await step.do("send welcome email", welcome, retries={"limit": 3, "delay": "1 second"})
        await step.sleep("let them look around", user.get("trial", "5 seconds"))

        try:
            decision = await step.wait_for_event(
                "manager approval", type="approval", timeout=user.get("approval_timeout", "1 hour")
            )
        except WorkflowTimeoutError:
            await step.do(
                "close unapproved account", lambda: print("no approval: closing") or "closed"
            )
            return {**account, "status": "expired"}

        verdict = decision.payload if isinstance(decision.payload, dict) else {}
        if not verdict.get("approved", False):
            reason = str(verdict.get("reason", "no reason given"))
            await step.do("notify rejection", lambda: print(f"rejected: {reason}") or reason)
            return {**account, "status": "rejected", "reason": reason}

        def grant() -> dict[str, Any]:
            print(f"granted {account['plan']} access to {account['account']}")
            return {"granted": True, "by": verdict.get("by", "manager")}

        grant_result = await step.do("grant access", grant)
        return {**account, "status": "active", "approved_by": grant_result["by"]}


async def fetch(request: Request, env: Any) -> Response:
    """``POST /signup`` starts an onboarding; ``GET /signup/<id>`` shows it;
    ``POST /signup/<id>/approve`` (body ``{"approved": true}``) answers the approval."""
    parts = [p for p in urlsplit(request.url).path.split("/") if p]
    if request.method == "POST" and parts == ["signup"]:
        body = await request.json() if request.body else {}
        if not isinstance(body, dict) or "email" not in body:
            return Response.json({"error": 'send {"email": "..."}'}, status=400)
        instance = await env.WORKFLOWS.create(params=body)
        return Response.json({"id": instance.id}, status=201)
    if len(parts) >= 2 and parts[0] == "signup":
        instance = await env.WORKFLOWS.get(parts[1])
        if request.method == "POST" and parts[2:] == ["approve"]:
            verdict = await request.json() if request.body else {"approved": True}
            await instance.send_event(type="approval", payload=verdict)
            return Response.json({"id": instance.id, "sent": "approval"}, status=202)
        if request.method == "GET" and len(parts) == 2:
            return Response.json(await instance.status())
    return Response.json({"error": "not found", "try": "POST /signup"}, status=404)

"""A nightly sales ETL: extract a batch, transform it, load a summary.

Shows retries with backoff (the flaky "warehouse" fails its first attempts), a step whose
callback reads its attempt number, and a non-retryable failure path: a malformed record
stops the run at once with ``NonRetryableError`` instead of burning retries.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from transforms import BadRecordError, clean, summarize

from dynamic_workflows.sdk import (
    NonRetryableError,
    Request,
    Response,
    StepContext,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)

SAMPLE = [
    {"sku": "tea-01", "qty": 3, "price": 4.5},
    {"sku": "mug-07", "qty": 1, "price": 12},
    {"sku": "tea-02", "qty": 5, "price": "3.25"},
]


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        params = event.payload or {}
        records = params.get("records", SAMPLE)
        flaky = int(params.get("flaky_attempts", 2))

        def extract(ctx: StepContext) -> list[Any]:
            # The source is flaky: its first ``flaky`` attempts time out.
            if ctx.attempt <= flaky:
                print(f"extract attempt {ctx.attempt}: source busy, will retry")
                raise ConnectionError("source busy")
            print(f"extract attempt {ctx.attempt}: {len(records)} records")
            return list(records)

        raw = await step.do(
            "extract",
            extract,
            retries={
                "limit": 4,
                "delay": params.get("retry_delay", "1 second"),
                "backoff": "exponential",
            },
            timeout="30 seconds",
        )

        def transform() -> list[dict[str, Any]]:
            try:
                return [clean(r) for r in raw]
            except BadRecordError as exc:
                print(f"bad record, giving up: {exc}")
                raise NonRetryableError(str(exc), name="BadRecord") from None

        rows = await step.do("transform", transform)
        summary = await step.do("summarize", lambda: summarize(rows))
        await step.do(
            "load to warehouse",
            lambda: print(f"loaded {summary['rows']} rows, revenue {summary['revenue']}") or True,
            retries={"limit": 2, "delay": "2 seconds", "backoff": "linear"},
        )
        return summary


async def fetch(request: Request, env: Any) -> Response:
    """``POST /runs`` (body ``{"records": [...], "flaky_attempts": 2}``) starts a run;
    ``GET /runs/<id>`` shows it."""
    parts = [p for p in urlsplit(request.url).path.split("/") if p]
    if request.method == "POST" and parts == ["runs"]:
        body = await request.json() if request.body else {}
        if not isinstance(body, dict):
            return Response.json({"error": "the body must be a JSON object"}, status=400)
        instance = await env.WORKFLOWS.create(params=body)
        return Response.json({"id": instance.id}, status=201)
    if request.method == "GET" and len(parts) == 2 and parts[0] == "runs":
        return Response.json(await (await env.WORKFLOWS.get(parts[1])).status())
    return Response.json({"error": "not found", "try": "POST /runs"}, status=404)

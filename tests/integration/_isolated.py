"""Run the behaviour suite's workflow classes inside real isolates (issue 4, issue 8).

``register_isolated`` ships a test's workflow class by value (cloudpickle, host to isolate
only) through the loader, and registers a thin host entrypoint that forwards
``run(event, step)`` into the isolate, exactly as the dispatch glue does for tenants. The
engine cannot tell the difference, so every S-number test checks the same outputs in both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dynamic_workflows.loader import WorkerCode, WorkerLoader
from dynamic_workflows.runtime import Workflows
from dynamic_workflows.sdk import WorkflowEntrypoint, WorkflowEvent, WorkflowStep


def register_isolated(
    engine: Workflows,
    name: str,
    cls: type,
    *,
    env: Mapping[str, Any] | None,
    loader: WorkerLoader,
) -> None:
    stub = loader.deploy(name, WorkerCode.from_entrypoint(cls, env=dict(env or {})))
    entry = stub.get_entrypoint(cls.__name__)

    class Isolated(WorkflowEntrypoint):
        async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
            return await entry.run(event, step)

    Isolated.__name__ = Isolated.__qualname__ = f"Isolated{cls.__name__}"
    engine.register(name, Isolated, env=dict(env or {}))

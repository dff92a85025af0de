"""dynamic-workflows: durable, per-tenant, isolated workflows. The public API.

Everything a host program needs is re-exported here; nothing else is public. Tenant code
imports ``dynamic_workflows.sdk`` instead (standard library only, runs inside isolates).

Names load lazily (PEP 562): an isolate importing ``dynamic_workflows.sdk`` imports this
package first, and must not drag the engine, SQLite or anyio in with it (it cost ~180 ms and
megabytes in every zygote and isolate).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .dispatch import (
        DynamicWorkflowBinding,
        LoadRunnerContext,
        create_dynamic_workflow_entrypoint,
        dispatch_workflow,
        wrap_workflow_binding,
    )
    from .loader import EntrypointStub, WorkerCode, WorkerLoader, WorkerStub
    from .runtime import (
        ExecutionInterrupted,
        InstanceHandle,
        InstanceStatus,
        ManualClock,
        SystemClock,
        WorkflowBinding,
        WorkflowContext,
        Workflows,
    )
    from .sandbox import IsolateLimits
    from .sdk import (
        InstanceNotFoundError,
        IsolateLimitError,
        MissingDispatcherMetadataError,
        NonRetryableDelayError,
        NonRetryableError,
        Request,
        Response,
        StepContext,
        WorkerEntrypoint,
        WorkflowEntrypoint,
        WorkflowError,
        WorkflowEvent,
        WorkflowFatalError,
        WorkflowInternalError,
        WorkflowNonDeterminismError,
        WorkflowStep,
        WorkflowStepEvent,
        WorkflowTimeoutError,
    )

_WHERE: dict[str, str] = {
    "DynamicWorkflowBinding": ".dispatch",
    "EntrypointStub": ".loader",
    "ExecutionInterrupted": ".runtime",
    "InstanceHandle": ".runtime",
    "InstanceNotFoundError": ".sdk",
    "InstanceStatus": ".runtime",
    "IsolateLimitError": ".sdk",
    "IsolateLimits": ".sandbox",
    "LoadRunnerContext": ".dispatch",
    "ManualClock": ".runtime",
    "MissingDispatcherMetadataError": ".sdk",
    "NonRetryableDelayError": ".sdk",
    "NonRetryableError": ".sdk",
    "Request": ".sdk",
    "Response": ".sdk",
    "StepContext": ".sdk",
    "SystemClock": ".runtime",
    "WorkerCode": ".loader",
    "WorkerEntrypoint": ".sdk",
    "WorkerLoader": ".loader",
    "WorkerStub": ".loader",
    "WorkflowBinding": ".runtime",
    "WorkflowContext": ".runtime",
    "WorkflowEntrypoint": ".sdk",
    "WorkflowError": ".sdk",
    "WorkflowEvent": ".sdk",
    "WorkflowFatalError": ".sdk",
    "WorkflowInternalError": ".sdk",
    "WorkflowNonDeterminismError": ".sdk",
    "WorkflowStep": ".sdk",
    "WorkflowStepEvent": ".sdk",
    "WorkflowTimeoutError": ".sdk",
    "Workflows": ".runtime",
    "create_dynamic_workflow_entrypoint": ".dispatch",
    "dispatch_workflow": ".dispatch",
    "wrap_workflow_binding": ".dispatch",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


__all__ = [
    "DynamicWorkflowBinding",
    "EntrypointStub",
    "ExecutionInterrupted",
    "InstanceHandle",
    "InstanceNotFoundError",
    "InstanceStatus",
    "IsolateLimitError",
    "IsolateLimits",
    "LoadRunnerContext",
    "ManualClock",
    "MissingDispatcherMetadataError",
    "NonRetryableDelayError",
    "NonRetryableError",
    "Request",
    "Response",
    "StepContext",
    "SystemClock",
    "WorkerCode",
    "WorkerEntrypoint",
    "WorkerLoader",
    "WorkerStub",
    "WorkflowBinding",
    "WorkflowContext",
    "WorkflowEntrypoint",
    "WorkflowError",
    "WorkflowEvent",
    "WorkflowFatalError",
    "WorkflowInternalError",
    "WorkflowNonDeterminismError",
    "WorkflowStep",
    "WorkflowStepEvent",
    "WorkflowTimeoutError",
    "Workflows",
    "create_dynamic_workflow_entrypoint",
    "dispatch_workflow",
    "wrap_workflow_binding",
]

"""dynamic-workflows: durable, per-tenant, isolated workflows. The public API.

Everything a host program needs is re-exported here; nothing else is public. Tenant code
imports ``dynamic_workflows.sdk`` instead (standard library only, runs inside isolates).
"""

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

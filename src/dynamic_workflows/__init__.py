"""dynamic-workflows: durable, per-tenant, isolated workflows. The public API."""

from .sdk import (
    InstanceNotFoundError,
    IsolateLimitError,
    MissingDispatcherMetadataError,
    NonRetryableDelayError,
    NonRetryableError,
    StepContext,
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
    "InstanceNotFoundError",
    "IsolateLimitError",
    "MissingDispatcherMetadataError",
    "NonRetryableDelayError",
    "NonRetryableError",
    "StepContext",
    "WorkflowEntrypoint",
    "WorkflowError",
    "WorkflowEvent",
    "WorkflowFatalError",
    "WorkflowInternalError",
    "WorkflowNonDeterminismError",
    "WorkflowStep",
    "WorkflowStepEvent",
    "WorkflowTimeoutError",
]

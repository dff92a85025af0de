"""What workflow and tenant code imports: standard library only, fast to import.

It must never import ``runtime``, ``rpc``, ``sandbox``, ``loader``, ``dispatch`` or
``server``: it runs inside isolates (subprocess and wasm) as well as in the host.
"""

from ._durations import Duration, InvalidDurationError, parse_duration
from ._entrypoints import WorkerEntrypoint, WorkflowEntrypoint
from ._errors import (
    InstanceNotFoundError,
    IsolateLimitError,
    MissingDispatcherMetadataError,
    NonRetryableDelayError,
    NonRetryableError,
    RemoteError,
    WorkflowError,
    WorkflowFatalError,
    WorkflowInternalError,
    WorkflowNonDeterminismError,
    WorkflowTimeoutError,
    error_from_dict,
    error_to_dict,
)
from ._http import Request, Response
from ._protocol import Decision, ErrorDict, Journal, JournalEntry, Outcome, StepOps, step_key
from ._step import StopExecution, WorkflowStep, gather, output_not_serialisable
from ._types import StepContext, StepInfo, WorkflowEvent, WorkflowStepEvent
from ._values import JSONValue, NotJSONError, decode_value, encode_value, json_size

__all__ = [
    "Decision",
    "Duration",
    "ErrorDict",
    "InstanceNotFoundError",
    "InvalidDurationError",
    "IsolateLimitError",
    "JSONValue",
    "Journal",
    "JournalEntry",
    "MissingDispatcherMetadataError",
    "NonRetryableDelayError",
    "NonRetryableError",
    "NotJSONError",
    "Outcome",
    "RemoteError",
    "Request",
    "Response",
    "StepContext",
    "StepInfo",
    "StepOps",
    "StopExecution",
    "WorkerEntrypoint",
    "WorkflowEntrypoint",
    "WorkflowError",
    "WorkflowEvent",
    "WorkflowFatalError",
    "WorkflowInternalError",
    "WorkflowNonDeterminismError",
    "WorkflowStep",
    "WorkflowStepEvent",
    "WorkflowTimeoutError",
    "decode_value",
    "encode_value",
    "error_from_dict",
    "error_to_dict",
    "gather",
    "json_size",
    "output_not_serialisable",
    "parse_duration",
    "step_key",
]

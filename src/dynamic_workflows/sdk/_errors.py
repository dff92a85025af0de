"""The one error tree. Class names are wire names; messages follow SEMANTICS.md.

Errors cross every boundary (store, channel, wasm) as ``{"name", "message"}`` and are
rebuilt with :func:`error_from_dict`, never pickled.
"""

from __future__ import annotations

import re
from typing import Any, Literal

LimitName = Literal["memory", "cpu", "wall", "stack"]


class WorkflowError(Exception):
    """Root of our errors; ``name`` and ``message`` are what ``status()`` reports."""

    def __init__(self, message: str, *, name: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.name = name or type(self).__name__

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "message": self.message}


class WorkflowFatalError(WorkflowError):
    """The instance cannot go on (invalid step name or config, step limit); never retried."""


class NonRetryableDelayError(WorkflowFatalError):
    """A dynamic retry delay callable raised, timed out or returned an invalid value (S14)."""


class WorkflowTimeoutError(WorkflowError):
    """A step attempt or a ``wait_for_event`` ran out of time (S17, S21)."""


class WorkflowInternalError(WorkflowError):
    """Our side failed: store failure, oversized output, an attempt lost to a crash (S8, S10)."""


class WorkflowNonDeterminismError(WorkflowError):
    """A replay diverged from the steps recorded by an earlier execution (S36)."""


class InstanceNotFoundError(WorkflowError):
    """Unknown instance id, or one that belongs to another tenant (S27, S38)."""

    def __init__(self, instance_id: str = "", *, message: str | None = None) -> None:
        self.instance_id = instance_id
        super().__init__(message or f"(instance.not_found) Instance {instance_id!r} not found")


class MissingDispatcherMetadataError(WorkflowError):
    """A dynamic entrypoint ran an instance created without the dispatcher's envelope."""


class IsolateLimitError(WorkflowError):
    """A tenant went over its memory, CPU or wall-time limit (S40); retried per the step config."""

    def __init__(self, limit: str = "wall", *, message: str | None = None) -> None:
        self.limit = limit
        super().__init__(message or f"Isolate exceeded its {limit} limit")


class NonRetryableError(WorkflowError):
    """Raised by workflow code to stop retries; the original error reaches ``step.do`` (S15)."""

    def __init__(self, message: str = "", name: str = "NonRetryableError") -> None:
        super().__init__(message, name=name)


class RemoteError(WorkflowError):
    """An error raised by code on the other side of a boundary, rebuilt by name and message.

    Used for exception classes we do not know (``ValueError`` raised by tenant code): the
    ``name`` is kept so ``status()`` shows what the author raised.
    """


_KNOWN: dict[str, type[WorkflowError]] = {
    cls.__name__: cls
    for cls in (
        WorkflowError,
        WorkflowFatalError,
        NonRetryableDelayError,
        WorkflowTimeoutError,
        WorkflowInternalError,
        WorkflowNonDeterminismError,
        InstanceNotFoundError,
        MissingDispatcherMetadataError,
        IsolateLimitError,
    )
}


def error_to_dict(error: BaseException) -> dict[str, str]:
    """``{"name", "message"}`` of any exception, as status() and the wire carry it."""
    if isinstance(error, WorkflowError):
        return {"name": error.name, "message": error.message}
    return {"name": type(error).__name__, "message": str(error)}


_LIMIT_IN_MESSAGE = re.compile(r"exceeded its (memory|cpu|wall|stack) limit")


def error_from_dict(data: dict[str, Any], *, limit: str | None = None) -> WorkflowError:
    """Rebuild an error from its wire form; unknown names become :class:`RemoteError`."""
    name = str(data.get("name") or "Error")
    message = str(data.get("message") or "")
    if name == "NonRetryableError":
        return NonRetryableError(message)
    if name == "IsolateLimitError":
        # The wire form is {name, message}: the limit survives in the standard message.
        found = _LIMIT_IN_MESSAGE.search(message)
        inferred = found.group(1) if found else None
        return IsolateLimitError(
            limit or str(data.get("limit") or inferred or "wall"), message=message
        )
    if name == "InstanceNotFoundError":
        return InstanceNotFoundError(message=message)
    cls = _KNOWN.get(name)
    if cls is not None:
        return cls(message)
    return RemoteError(message, name=name)

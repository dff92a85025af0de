"""Errors of the channel itself; everything else crosses as ``{"name", "message"}``."""

from __future__ import annotations

from ..sdk import WorkflowError, WorkflowInternalError


class ProtocolError(WorkflowInternalError):
    """The peer sent a malformed, oversized or over-deep frame; the channel is closed."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"RPC protocol violation: {reason}")


class ChannelClosedError(WorkflowInternalError):
    """The channel closed while a call was in flight (the peer died, or we closed it)."""

    def __init__(self, reason: str = "channel closed") -> None:
        self.reason = reason
        super().__init__(f"RPC channel closed: {reason}")


class CapabilityError(WorkflowError):
    """A call named a capability id that was never handed over or was revoked, or a method
    that the capability does not expose. Only that call fails."""


class FrameTooLargeError(WorkflowInternalError):
    """A message we were about to send exceeds the maximum frame size; nothing was sent."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"message of {size} bytes exceeds the maximum frame size {limit}")

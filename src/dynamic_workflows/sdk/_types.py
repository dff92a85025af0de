"""Plain data types seen by workflow code: events, step events and the step context."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def to_datetime(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, tz=UTC)


@dataclass(frozen=True)
class WorkflowEvent:
    """What ``run(event, step)`` receives (S24)."""

    payload: Any
    timestamp: datetime
    instance_id: str
    workflow_name: str = ""

    def to_wire(self) -> dict[str, Any]:
        from ._values import encode_value

        return {
            "payload": encode_value(self.payload),
            "timestamp": self.timestamp.timestamp(),
            "instance_id": self.instance_id,
            "workflow_name": self.workflow_name,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> WorkflowEvent:
        from ._values import decode_value

        return cls(
            payload=decode_value(data.get("payload")),
            timestamp=to_datetime(float(data["timestamp"])),
            instance_id=str(data["instance_id"]),
            workflow_name=str(data.get("workflow_name", "")),
        )


@dataclass(frozen=True)
class WorkflowStepEvent:
    """What ``step.wait_for_event`` returns (S21)."""

    payload: Any
    timestamp: datetime
    type: str


@dataclass(frozen=True)
class StepInfo:
    name: str
    count: int


@dataclass(frozen=True)
class StepContext:
    """Passed to a step callback that takes one argument (S18).

    ``config`` is a copy of the merged config; mutating it changes nothing.
    """

    step: StepInfo
    attempt: int
    config: dict[str, Any] = field(default_factory=dict)

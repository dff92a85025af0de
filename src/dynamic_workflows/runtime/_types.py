"""Plain data the engine hands out: statuses, the execution context, the interrupt signal."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..sdk import WorkflowError

STATUSES = (
    "queued",
    "running",
    "paused",
    "waiting",
    "waitingForPause",
    "complete",
    "errored",
    "terminated",
    "unknown",
)
TERMINAL = frozenset({"complete", "errored", "terminated"})


@dataclass(frozen=True)
class InstanceStatus:
    """What ``status()`` reports (S28): ``output`` only when complete, ``error`` only when
    errored, ``steps`` the timeline built from the instance's event log."""

    status: str
    output: Any = None
    error: dict[str, str] | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    id: str = ""
    workflow: str = ""
    created: float = 0.0
    updated: float = 0.0
    uid: str = ""
    scope: str = ""


@dataclass(frozen=True)
class WorkflowContext:
    """The ``ctx`` a workflow class is built with. ``envelope`` is the dispatcher's hidden
    metadata (S37): it reaches the entrypoint here and nowhere else."""

    instance_id: str
    workflow_name: str
    uid: str
    scope: str = ""
    envelope: Any = None


class ExecutionInterrupted(BaseException):
    """Raised out of ``run`` when the thing executing it died (an isolate crashed or hit a
    limit): the attempts in flight fail with ``error`` and the run replays (S8, S40)."""

    def __init__(self, error: WorkflowError) -> None:
        super().__init__(error.message)
        self.error = error

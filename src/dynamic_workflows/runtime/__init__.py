"""The durable workflow engine: instances, the durable step, timers, events and stores.

It knows nothing of isolates: it must never import ``rpc``, ``sandbox``, ``loader``,
``dispatch`` or ``server`` (an import-linter contract). A workflow reaches it only through
the step protocol (``sdk.StepOps``), which is JSON-only, so the same engine drives code
in-process, in a subprocess isolate or in wasm.
"""

from ._clock import Clock, ManualClock, SystemClock
from ._engine import InstanceHandle, WorkflowBinding, Workflows
from ._store import Store, open_store
from ._types import STATUSES as INSTANCE_STATUSES
from ._types import ExecutionInterrupted, InstanceStatus, WorkflowContext

__all__ = [
    "INSTANCE_STATUSES",
    "Clock",
    "ExecutionInterrupted",
    "InstanceHandle",
    "InstanceStatus",
    "ManualClock",
    "Store",
    "SystemClock",
    "WorkflowBinding",
    "WorkflowContext",
    "Workflows",
    "open_store",
]

"""The one ``Isolate`` protocol every backend (in-process, subprocess, wasm) implements.

The loader holds isolates; it never knows which backend it talks to. Everything that comes
back from an isolate is validated JSON; the host never unpickles, evals or imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ..sdk import (
    IsolateLimitError,
    Journal,
    Request,
    Response,
    StepOps,
    WorkflowError,
    WorkflowEvent,
    WorkflowInternalError,
    WorkflowTimeoutError,
)
from ._limits import DEFAULT_LIMITS, IsolateLimits

BackendName = Literal["inprocess", "subprocess", "wasm"]
LimitName = Literal["memory", "cpu", "wall"]

CRASH_MESSAGE = "Attempt failed due to internal workflows error"


class IsolateLost(Exception):
    """The isolate died under a call (a limit, a killed step timeout, a crash).

    ``error`` is what the affected attempt failed with: ``IsolateLimitError(limit)`` for a
    limit, ``WorkflowTimeoutError`` when the host killed a step past its timeout (S17),
    ``WorkflowInternalError`` for any other crash (S8). The loader turns it into the
    engine's ``ExecutionInterrupted(error)``.
    """

    def __init__(self, error: WorkflowError) -> None:
        super().__init__(f"isolate lost: {error.name}: {error.message}")
        self.error = error

    @classmethod
    def limit(cls, limit: LimitName) -> IsolateLost:
        return cls(IsolateLimitError(limit))

    @classmethod
    def timeout(cls, seconds: float) -> IsolateLost:
        return cls(WorkflowTimeoutError(f"Execution timed out after {round(seconds * 1000)}ms"))

    @classmethod
    def crash(cls) -> IsolateLost:
        return cls(WorkflowInternalError(CRASH_MESSAGE))


@dataclass(frozen=True)
class CodeBundle:
    """Tenant code as delivered to an isolate: sources only, over the channel.

    ``pickled_entrypoints`` carries classes defined in trusted host code (tests, notebooks),
    shipped by value with cloudpickle from host to isolate only, never back.
    """

    main_module: str
    modules: Mapping[str, str]
    version: str
    env: Mapping[str, Any] = field(default_factory=dict)
    """Binding name -> a JSON value or a host capability object (see ``rpc``)."""
    limits: IsolateLimits = DEFAULT_LIMITS
    pickled_entrypoints: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class RunResult:
    """How ``run(event, step)`` ended inside the isolate.

    ``outcome``: ``"return"`` (``value`` is the encoded output), ``"raise"`` (``error`` is
    ``{"name", "message"}``) or ``"stop"`` (the host's ops said stop). ``hits`` are journal
    keys the isolate answered locally (S36 bookkeeping).
    """

    outcome: Literal["return", "raise", "stop"]
    value: Any = None
    error: dict[str, str] | None = None
    hits: tuple[str, ...] = ()


LogSink = Callable[[dict[str, Any]], None]
"""Receives one captured log record: ``{"stream": "stdout"|"stderr"|"log", "line": str,
"instance_id": str | None, "ts": float}``; the loader adds the tenant."""


class Isolate(Protocol):
    """A confined home for one tenant's code version."""

    id: str
    backend: BackendName
    confinement: Mapping[str, Any]
    """What was applied, e.g. ``{"netns": True, "landlock_abi": 7, "seccomp": True}``."""

    async def load(self, code: CodeBundle) -> None:
        """Deliver and import the tenant's modules (before any call)."""

    async def run_workflow(
        self,
        entrypoint: str,
        event: WorkflowEvent,
        ops: StepOps,
        journal: Journal,
        *,
        step_limit: int,
    ) -> RunResult:
        """``EntrypointClass(ctx, env).run(event, step)`` inside the isolate; ``step`` is a
        proxy whose ops call back into ``ops`` on the host. Raises :class:`IsolateLost` when
        the isolate dies under the call."""

    async def fetch(self, entrypoint: str | None, request: Request) -> Response:
        """The tenant's ``fetch(request, env)`` (module-level) or ``Entrypoint.fetch``."""

    async def call(self, entrypoint: str, method: str, args: list[Any]) -> Any:
        """Any other public async method of a named entrypoint; JSON in and out."""

    def on_log(self, sink: LogSink) -> None:
        """Route captured ``print``/logging output to ``sink``."""

    @property
    def alive(self) -> bool: ...

    async def close(self) -> None:
        """Stop the isolate and free what it holds; idempotent."""

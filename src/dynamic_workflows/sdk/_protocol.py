"""The step protocol: how a workflow's ``step`` asks the host what to do.

Changes (ENGINE-CORE): ``WorkflowStep.absorb_hits(keys)`` lets a host that forwarded a run to
another runner (an isolate, wasm) add the journal keys that runner answered locally, so the
host's divergence check (S36) sees them; unknown keys are ignored. The host answers a
``do_end`` for a step with no attempt in flight, a malformed outcome or an oversized value
with a typed ``raise`` decision; a value that is not plain JSON fails the instance (S10).
``WorkflowStep`` marks its own op calls (``sdk._step.calling_step()``, a ContextVar) so the
host can tell an in-process run from ops arriving over a channel; nothing on the wire changes.

A step op never runs durable logic itself. It asks the host (the engine in-process, or the
engine behind an RPC capability when the workflow runs in an isolate, or a wasm host call),
which answers with a :class:`Decision`. Every argument and answer is plain JSON, so the same
:class:`~dynamic_workflows.sdk.WorkflowStep` drives all three. The host treats every request
as untrusted input.

Decisions:

- ``{"action": "value", "value": v}``: return ``decode_value(v)`` from the op.
- ``{"action": "raise", "error": {"name", "message"}}``: raise that error from the op.
- ``{"action": "attempt", "attempt": n, "timeout": s, "config": merged}``: ``do`` only; run
  the callback (attempt ``n``, bounded by ``timeout`` seconds) and report with ``do_end``.
- ``{"action": "stop"}``: unwind ``run`` at once with :class:`StopExecution`; the host has
  already decided why (hibernation, pause, terminate, a fatal error).

The journal shipped with a run maps ``"<name>-<count>"`` to a completed record
``{"kind": "do" | "sleep" | "event", "value"?: v, "error"?: {...}}``, so replaying completed
steps costs no round trip; the step reports those hits with :meth:`WorkflowStep.hits`.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, Protocol, TypedDict

StepKind = Literal["do", "sleep", "event"]


class ErrorDict(TypedDict):
    name: str
    message: str


class JournalEntry(TypedDict):
    kind: StepKind
    value: NotRequired[Any]
    error: NotRequired[ErrorDict]


Journal = dict[str, JournalEntry]


class Decision(TypedDict):
    action: Literal["value", "raise", "attempt", "stop"]
    value: NotRequired[Any]
    error: NotRequired[ErrorDict]
    attempt: NotRequired[int]
    timeout: NotRequired[float]
    config: NotRequired[dict[str, Any]]


class Outcome(TypedDict):
    """How an attempt ended, reported with ``do_end``.

    Exactly one of ``value`` (success, encoded), ``error`` (failure) or ``fatal`` (the
    instance must fail at once: S10's non-serialisable result).
    ``retryable`` is False for :class:`NonRetryableError` and delay-function failures;
    ``delay`` is the dynamic delay's result in seconds (S14), when one was computed.
    """

    value: NotRequired[Any]
    error: NotRequired[ErrorDict]
    fatal: NotRequired[ErrorDict]
    retryable: NotRequired[bool]
    delay: NotRequired[float]


class StepOps(Protocol):
    """The host side of a step. ``config`` is the validated user config, JSON-shaped:
    ``{"retries": {"limit", "delay": seconds | "dynamic", "backoff"}, "timeout": seconds,
    "sensitive": "output"}``, holding only the keys the author gave."""

    async def do_begin(self, name: str, count: int, config: dict[str, Any]) -> Decision: ...

    async def do_end(self, name: str, count: int, attempt: int, outcome: Outcome) -> Decision: ...

    async def sleep(
        self, name: str, count: int, seconds: float | None, until: float | None
    ) -> Decision: ...

    async def wait_for_event(
        self, name: str, count: int, type: str, timeout: float | None
    ) -> Decision: ...


def step_key(name: str, count: int) -> str:
    return f"{name}-{count}"

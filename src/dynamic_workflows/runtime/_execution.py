"""One execution of ``run(event, step)``: the host side of the step protocol.

An :class:`Execution` is the :class:`~dynamic_workflows.sdk.StepOps` of one replay of one
instance. It decides (cached value, attempt n, retry after d, fail, stop) and persists, and
it treats every request as untrusted: an isolate may send anything, and gets a typed error
back rather than a crash. All decisions of one instance are taken under the instance's lock,
so an admin call (pause, terminate, an event) always sees a settled state.

Waits (a retry's delay, a sleep, an event) wait in memory on the clock while they are short;
when every live branch of the run is waiting and the nearest wake-up is further away than
``hibernate_after``, the execution hibernates: each op answers ``stop``, the run unwinds, and
a durable timer (or an event) replays it later. Results are the same either way (S20).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..sdk import (
    Decision,
    Journal,
    JournalEntry,
    Outcome,
    StopExecution,
    WorkflowError,
    WorkflowEvent,
    WorkflowFatalError,
    WorkflowInternalError,
    WorkflowNonDeterminismError,
    WorkflowStep,
    WorkflowTimeoutError,
    decode_value,
    encode_value,
    error_to_dict,
    output_not_serialisable,
    step_key,
)
from ..sdk._step import calling_step
from ..sdk._types import to_datetime
from ._clock import TimerHandle
from ._json import NotPlainJSON, check_plain, dumps
from ._policy import (
    DEFAULT_EVENT_TIMEOUT,
    DEFAULT_TIMEOUT,
    bounded_error,
    check_error_dict,
    check_event_type,
    context_config,
    finite_seconds,
    invalid_step_name,
    merge_config,
    retry_after,
    size_text,
    valid_count,
    valid_step_name,
)
from ._store import Ident, InstanceRow, LogEntry, StepRow, Tx
from ._timeline import REDACTED
from ._types import ExecutionInterrupted, WorkflowContext

if TYPE_CHECKING:
    from ._engine import Workflows

STOP: Decision = {"action": "stop"}
NONE_VALUE: Decision = {"action": "value", "value": None}
LOST_ATTEMPT = {
    "name": "WorkflowInternalError",
    "message": "Attempt failed due to internal workflows error",
}
MAX_CONSECUTIVE_INTERRUPTS = 3
DRAIN_MARGIN = 5.0  # real seconds past an attempt's timeout before it counts as lost
HIBERNATE_HOPS = 3  # loop turns with every branch waiting before hibernating (in-process)
REMOTE_GRACE = 0.05  # seconds, when the run's ops come over a channel (an isolate)
StopReason = Literal[
    "hibernate", "pause", "replay", "fatal", "terminate", "restart", "delete", "shutdown"
]
_SOFT: frozenset[str | None] = frozenset({None, "hibernate", "pause", "replay"})


def _raise(error: WorkflowError) -> Decision:
    return {"action": "raise", "error": {"name": error.name, "message": error.message}}


def _raise_dict(error: dict[str, str]) -> Decision:
    return {"action": "raise", "error": {"name": error["name"], "message": error["message"]}}


@dataclass
class _Wait:
    key: str
    deadline: float
    future: asyncio.Future[Decision | None]  # None: the deadline came
    timer: TimerHandle | None = None


class Execution:
    """The StepOps of one execution of one instance (see the module docstring)."""

    def __init__(self, engine: Workflows, row: InstanceRow, steps: list[StepRow]) -> None:
        self.engine = engine
        self.row = row
        self.uid = row.uid
        self.ident = Ident(row.uid, row.id, row.workflow, row.scope)
        self.lock = engine._lock(row.uid)
        self.records: dict[str, StepRow] = {s.key: s for s in steps}
        self.prior_final = {
            k for k, s in self.records.items() if s.state in ("complete", "errored")
        }
        self.asked: set[str] = set()
        self.inflight: dict[str, int] = {}
        self.waits: dict[str, _Wait] = {}
        self.busy = 0
        self.do_calls = 0
        self.stop_reason: StopReason | None = None
        self.doomed = False  # some op answered stop: this run will unwind
        self.closed = False  # nothing more may be written by this execution
        self.rerun = False  # an event arrived while hibernating: replay at once
        self.status = row.status
        self.task: asyncio.Task[None] | None = None
        self.drained = asyncio.Event()
        self.drained.set()
        self._idle_gen = 0
        self.remote = False
        self.quiescent = False  # every branch has been waiting (for the grace)

    # -- bookkeeping --------------------------------------------------------------------

    @property
    def clock_now(self) -> float:
        return self.engine.clock.now()

    def journal(self) -> Journal:
        journal: Journal = {}
        for key, rec in self.records.items():
            if rec.state == "complete":
                entry: JournalEntry = {"kind": rec.kind}
                if rec.kind != "sleep":
                    entry["value"] = rec.value
                journal[key] = entry
            elif rec.state == "errored" and rec.error is not None:
                error = bounded_error(rec.error)
                journal[key] = {
                    "kind": rec.kind,
                    "error": {"name": error["name"], "message": error["message"]},
                }
        return journal

    def _derived_status(self) -> str:
        if self.stop_reason == "pause":
            return "waitingForPause" if self.inflight else "paused"
        if self.waits and not self.inflight and self.quiescent:
            return "waiting"
        return "running"

    def tx(self, **fields: Any) -> Tx:
        """A transaction of this instance carrying the status change, if any."""
        tx = Tx(self.ident, **fields)
        status = self._derived_status()
        if status != self.status and not self.closed:
            now = self.clock_now
            tx.instance.update(status=status, updated=now)
            if status == "paused":
                tx.instance["paused_at"] = now
                tx.log.append(LogEntry("paused", now))
            self.status = status
        return tx

    async def write(self, tx: Tx) -> None:
        await self.engine._commit(tx)

    def write_later(self, tx: Tx) -> None:
        """Enqueue without waiting: the store applies it before anything queued later."""
        self.engine._commit_later(tx)

    def _enter(self) -> None:
        self.busy += 1
        self.quiescent = False
        caller = calling_step()
        if caller is None or caller.ops is not self:
            self.remote = True  # ops arrive over a channel: give sibling ops time to arrive

    def _exit(self) -> None:
        self.busy -= 1
        if self.busy == 0:
            self._check_idle_soon()

    def _check_idle_soon(self) -> None:
        """Check for hibernation a few loop turns later (debounced): a sibling branch in an
        isolate may have an op arriving on the same channel read. A later op that still
        misses the check is handled by :meth:`_late`."""
        self._idle_gen += 1
        loop = asyncio.get_running_loop()
        if self.remote:
            loop.call_later(REMOTE_GRACE, self._idle_hop, self._idle_gen, 0)
        else:
            loop.call_soon(self._idle_hop, self._idle_gen, HIBERNATE_HOPS)

    def _idle_hop(self, gen: int, hops: int) -> None:
        if gen != self._idle_gen:
            return
        if hops > 0:
            asyncio.get_running_loop().call_soon(self._idle_hop, gen, hops - 1)
        else:
            self._check_idle()

    def _check_idle(self) -> None:
        """Hibernate when every live branch waits and the next wake-up is far (S20)."""
        if self.stop_reason is not None or self.closed or self.busy or self.inflight:
            return
        if not self.waits:
            return
        nearest = min(w.deadline for w in self.waits.values())
        if nearest - self.clock_now > self.engine.hibernate_after:
            self.stop("hibernate")  # the hibernation's record says "waiting"
            return
        if not self.quiescent:
            # S20: "waiting" once every branch waits (so a status of "waiting" also means
            # the hibernation, if any, has been decided: it writes "waiting" itself).
            self.quiescent = True
            if self._derived_status() != self.status:
                self.write_later(self.tx())

    def stop(self, reason: StopReason) -> None:
        """Make every op answer stop from now on; soft reasons yield to hard ones."""
        if self.stop_reason not in _SOFT:
            return
        if reason in ("hibernate", "replay") and self.stop_reason == "pause":
            return
        self.stop_reason = reason
        if reason not in _SOFT:
            self.closed = True
        for wait in list(self.waits.values()):
            if not wait.future.done():
                wait.future.set_result(STOP)

    def _late(self) -> bool:
        """Hibernation is unwinding the run: a sleep or wait asked for now is still recorded
        (its timer pinned from now, as if it had been asked a moment earlier), then stopped."""
        return self.stop_reason == "hibernate" and not self.closed

    def _stop_late(self) -> Decision:
        self.doomed = True
        return STOP

    def _stopped(self) -> Decision | None:
        if self.stop_reason is not None or self.closed:
            self.doomed = True
            return STOP
        return None

    def _add_wait(self, key: str, deadline: float) -> _Wait:
        wait = _Wait(key, deadline, asyncio.get_running_loop().create_future())
        self.waits[key] = wait
        return wait

    async def _await(self, wait: _Wait) -> Decision | None:
        """None when the deadline came; else ``stop`` or a delivered event's value."""

        def due() -> None:
            if not wait.future.done():
                wait.future.set_result(None)

        wait.timer = self.engine.clock.call_at(wait.deadline, due)
        if self._derived_status() != self.status and not self.closed:
            self.write_later(self.tx())  # S20: waiting (a replayed wait wrote no record)
        self.busy -= 1
        self._check_idle_soon()
        try:
            return await wait.future
        finally:
            self.busy += 1
            self.quiescent = False  # this branch runs again
            if wait.timer is not None:
                wait.timer.cancel()
            if self.waits.get(wait.key) is wait:
                del self.waits[wait.key]

    def _check_step(self, name: object, count: object) -> Decision | None:
        limits = self.engine.limits
        if not valid_step_name(name, limits):
            return _raise(invalid_step_name(name, limits))
        if not valid_count(count):
            return _raise(WorkflowError(f"invalid step occurrence {count!r}"))
        return None

    async def _recorded(self, key: str, kind: str) -> tuple[StepRow | None, Decision | None]:
        """(lock held) The record of ``key`` if it is of ``kind``; a record of another kind
        goes to the divergence rule (S36), which either answers or lets the op go on as new."""
        rec = self.records.get(key)
        if rec is None or rec.kind == kind:
            return rec, None
        return None, await self._kind_mismatch(rec, kind)

    async def _kind_mismatch(self, rec: StepRow, kind: str) -> Decision | None:
        """S36: a recorded step asked for as another kind. None means "go on as new"."""
        message = (
            f'Step "{rec.key}" was recorded as a {_KIND_NAMES[rec.kind]} by an earlier '
            f"execution, but this execution asked for a {_KIND_NAMES[kind]} with the same "
            "name and occurrence. Workflow code must ask for the same steps in the same "
            "order on every replay; keep changes of code to new instances, or restart() "
            "this one to run the new code from scratch."
        )
        if self.engine.on_divergence == "error":
            await self.fail(WorkflowNonDeterminismError(message))
            return STOP
        now = self.clock_now
        self.write_later(
            self.tx(log=[LogEntry("divergence_warning", now, rec.key, {"message": message})])
        )
        del self.records[rec.key]
        self.prior_final.discard(rec.key)
        return None

    async def fail(self, error: WorkflowError) -> None:
        """Error the instance at once (caller holds the lock)."""
        now = self.clock_now
        self.stop("fatal")
        self.status = "errored"
        tx = Tx(
            self.ident,
            instance={
                "status": "errored",
                "error": error.to_dict(),
                "updated": now,
                "wake_at": None,
            },
            log=[LogEntry("errored", now, None, {"error": error.to_dict()})],
        )
        await self.write(tx)

    # -- step.do --------------------------------------------------------------------------

    def _attempt(self, rec: StepRow) -> Decision:
        assert rec.config is not None
        return {
            "action": "attempt",
            "attempt": rec.attempts,
            "timeout": float(rec.config["timeout"]),
            "config": context_config(rec.config),
        }

    async def do_begin(self, name: str, count: int, config: dict[str, Any]) -> Decision:
        self._enter()
        try:
            return await self._do_begin(name, count, config)
        finally:
            self._exit()

    async def _do_begin(self, name: str, count: int, config: dict[str, Any]) -> Decision:
        bad = self._check_step(name, count)
        if bad is not None:
            return bad
        try:
            merged = merge_config(name, config)
        except WorkflowFatalError as error:
            return _raise(error)
        key = step_key(name, count)
        async with self.lock:
            stopped = self._stopped()
            if stopped is not None:
                return stopped
            self.asked.add(key)
            self.do_calls += 1
            if self.do_calls > self.engine.limits.step_limit:
                return _raise(
                    WorkflowFatalError(
                        f"The limit of {self.engine.limits.step_limit} steps has been reached. "
                        "Split the work across more instances or raise the engine's step_limit."
                    )
                )
            rec, mismatch = await self._recorded(key, "do")
            if mismatch is not None:
                return mismatch
            if rec is None:
                now = self.clock_now
                rec = StepRow(key, name, count, "do", "running", 1, merged, start=now)
                self.records[key] = rec
                self._inflight(key, 1)
                # durable before the callback runs: an attempt in flight at a crash must be
                # found and counted as failed on restart (S8)
                await self.write(
                    self.tx(
                        steps=[rec],
                        log=[
                            LogEntry(
                                "step_started",
                                now,
                                key,
                                {"name": name, "count": count, "config": merged},
                            ),
                            LogEntry("attempt_started", now, key, {"attempt": 1}),
                        ],
                    )
                )
                return self._attempt(rec)
            if key in self.inflight or key in self.waits:
                return _raise(WorkflowError(f'Step "{key}" is already in progress'))
            if rec.state == "complete":
                return {"action": "value", "value": rec.value}
            if rec.state == "errored":
                return _raise_dict(bounded_error(rec.error or {}))
            if rec.state == "running":
                # S8: the attempt was in flight when an earlier execution died.
                settled = await self._failed(rec, dict(LOST_ATTEMPT), True, None)
                if isinstance(settled, dict):
                    return settled
                wait = settled
            else:
                wait = self._add_wait(key, rec.wake_at or self.clock_now)
        return await self._retry(rec, wait)

    async def _retry(self, rec: StepRow, wait: _Wait) -> Decision:
        result = await self._await(wait)
        if result is not None and result["action"] == "stop":
            self.doomed = True
            return result
        async with self.lock:
            stopped = self._stopped()
            if stopped is not None:
                return stopped
            now = self.clock_now
            rec.state = "running"
            rec.attempts += 1
            rec.wake_at = None
            self._inflight(rec.key, rec.attempts)
            await self.write(  # durable before the attempt runs (S8)
                self.tx(
                    steps=[rec],
                    log=[LogEntry("attempt_started", now, rec.key, {"attempt": rec.attempts})],
                )
            )
            return self._attempt(rec)

    def _inflight(self, key: str, attempt: int) -> None:
        self.inflight[key] = attempt
        self.drained.clear()

    def _landed(self, key: str) -> None:
        self.inflight.pop(key, None)
        if not self.inflight:
            self.drained.set()

    async def _failed(
        self, rec: StepRow, error: dict[str, str], retryable: bool, delay: float | None
    ) -> Decision | _Wait:
        """An attempt failed (lock held): persist it and answer the final decision, or the
        wait before the next attempt (the record is ``retrying`` until ``wake_at``)."""
        assert rec.config is not None
        now = self.clock_now
        seconds = retry_after(
            rec.config, rec.attempts, retryable, delay, self.engine.limits.max_sleep_seconds
        )
        self._landed(rec.key)
        failed = {"attempt": rec.attempts, "error": error, "retry_at": None}
        if seconds is None:
            rec.state = "errored"
            rec.error = error
            rec.end = now
            await self.write(
                self.tx(
                    steps=[rec],
                    log=[
                        LogEntry("attempt_failed", now, rec.key, failed),
                        LogEntry("step_failed", now, rec.key, {"error": error}),
                    ],
                )
            )
            return _raise_dict(error)
        rec.state = "retrying"
        rec.error = error
        rec.wake_at = now + seconds
        failed["retry_at"] = rec.wake_at
        wait = None
        if self.stop_reason is None and not self.closed:
            wait = self._add_wait(rec.key, rec.wake_at)
        await self.write(
            self.tx(steps=[rec], log=[LogEntry("attempt_failed", now, rec.key, failed)])
        )
        if wait is None:
            self.doomed = True
            return STOP
        return wait

    async def do_end(self, name: str, count: int, attempt: int, outcome: Outcome) -> Decision:
        self._enter()
        try:
            return await self._do_end(name, count, attempt, outcome)
        finally:
            self._exit()

    async def _do_end(self, name: str, count: int, attempt: int, outcome: Outcome) -> Decision:
        bad = self._check_step(name, count)
        if bad is not None:
            return bad
        key = step_key(name, count)
        async with self.lock:
            if self.closed:
                self.doomed = True
                return STOP
            rec = self.records.get(key)
            if (
                rec is None
                or rec.kind != "do"
                or self.inflight.get(key) != attempt
                or not valid_count(attempt)
            ):
                return _raise(WorkflowError(f'No attempt {attempt!r} of step "{key}" is in flight'))
            parsed = self._parse_outcome(key, outcome)
            now = self.clock_now
            if parsed[0] == "value":
                value = parsed[1]
                self._landed(key)
                rec.state = "complete"
                rec.value = value
                rec.end = now
                shown = (
                    REDACTED if rec.config and rec.config.get("sensitive") == "output" else value
                )
                await self.write(
                    self.tx(
                        steps=[rec],
                        log=[
                            LogEntry(
                                "step_succeeded", now, key, {"attempt": attempt, "output": shown}
                            )
                        ],
                    )
                )
                return self._stopped() or {"action": "value", "value": value}
            if parsed[0] == "fatal":
                error = parsed[1]
                self._landed(key)
                rec.state = "errored"
                rec.error = error
                rec.end = now
                await self.write(
                    self.tx(steps=[rec], log=[LogEntry("step_failed", now, key, {"error": error})])
                )
                await self.fail(WorkflowFatalError(error["message"], name=error["name"]))
                self.doomed = True
                return STOP
            if parsed[0] == "final":
                settled = await self._failed(rec, parsed[1], False, None)
            else:
                _, error, retryable, delay = parsed
                settled = await self._failed(rec, error, retryable, delay)
            if isinstance(settled, dict):
                return self._stopped() or settled
        return await self._retry(rec, settled)

    def _parse_outcome(self, key: str, outcome: object) -> tuple[Any, ...]:
        """Validate an untrusted outcome: ("value", v) | ("error", e, retryable, delay) |
        ("fatal", e) | ("final", e) (a failure that must not be retried)."""
        if not isinstance(outcome, dict):
            return ("final", _bad_outcome(key, "not an object"))
        present = [k for k in ("value", "error", "fatal") if k in outcome]
        if len(present) != 1 or set(outcome) - {"value", "error", "fatal", "retryable", "delay"}:
            return ("final", _bad_outcome(key, "needs exactly one of value, error or fatal"))
        if "value" in outcome:
            value = outcome["value"]
            try:
                check_plain(value)
                size = len(dumps(value).encode("utf-8"))
            except NotPlainJSON as bad:
                return (
                    "fatal",
                    {
                        "name": "WorkflowFatalError",
                        "message": f'Serialization failed: the step "{key}" returned a value '
                        f"which is not serialisable ({bad})",
                    },
                )
            limit = self.engine.limits.max_payload_bytes
            if size > limit:
                return (
                    "final",
                    {
                        "name": "WorkflowInternalError",
                        "message": f"Step {key} output is too large. "
                        f"Maximum allowed size is {size_text(limit)}.",
                    },
                )
            return ("value", value)
        if "fatal" in outcome:
            fatal = check_error_dict(outcome["fatal"])
            return ("fatal", fatal or _bad_outcome(key, "malformed fatal error"))
        error = check_error_dict(outcome["error"])
        if error is None:
            return ("final", _bad_outcome(key, "malformed error"))
        retryable = outcome.get("retryable", True)
        if not isinstance(retryable, bool):
            return ("final", _bad_outcome(key, "retryable must be a boolean"))
        delay: float | None = None
        if "delay" in outcome:
            delay = finite_seconds(outcome["delay"])
            if delay is None:
                return (
                    "final",
                    {
                        "name": "NonRetryableDelayError",
                        "message": f'The delay function for step "{key}" '
                        "returned an invalid delay value",
                    },
                )
        return ("error", error, retryable, delay)

    # -- step.sleep -----------------------------------------------------------------------

    async def sleep(
        self, name: str, count: int, seconds: float | None, until: float | None
    ) -> Decision:
        self._enter()
        try:
            return await self._sleep(name, count, seconds, until)
        finally:
            self._exit()

    async def _sleep(
        self, name: str, count: int, seconds: float | None, until: float | None
    ) -> Decision:
        bad = self._check_step(name, count)
        if bad is not None:
            return bad
        given_seconds = finite_seconds(seconds) if seconds is not None else None
        given_until = finite_seconds(until) if until is not None else None
        if (given_seconds is None) == (given_until is None):
            return _raise(
                WorkflowError(f'Sleep "{name}" needs a duration or a time to sleep until')
            )
        key = step_key(name, count)
        limits = self.engine.limits
        async with self.lock:
            late = self._late()
            stopped = None if late else self._stopped()
            if stopped is not None:
                return stopped
            self.asked.add(key)
            rec, mismatch = await self._recorded(key, "sleep")
            if mismatch is not None:
                return mismatch
            if rec is not None and rec.state == "complete":
                return NONE_VALUE
            if key in self.waits or key in self.inflight:
                return _raise(WorkflowError(f'Step "{key}" is already in progress'))
            if rec is None:
                now = self.clock_now
                if given_until is not None:
                    if given_until < now:
                        return _raise(
                            WorkflowError(
                                f'sleep_until "{name}": '
                                f"{to_datetime(given_until).isoformat()} is in the past"
                            )
                        )
                    wake = given_until
                else:
                    assert given_seconds is not None
                    wake = now + given_seconds
                if wake - now > limits.max_sleep_seconds:
                    return _raise(
                        WorkflowError(
                            f'Sleep "{name}" is longer than the maximum of '
                            f"{limits.max_sleep_seconds / 86400:g} days (max_sleep_seconds)"
                        )
                    )
                rec = StepRow(key, name, count, "sleep", "waiting", start=now, wake_at=wake)
                self.records[key] = rec
                wait = None if late else self._add_wait(key, wake)
                await self.write(
                    self.tx(
                        steps=[rec],
                        log=[
                            LogEntry(
                                "sleep_started",
                                now,
                                key,
                                {"name": name, "count": count, "until": wake},
                            )
                        ],
                    )
                )
            elif not late:
                wait = self._add_wait(key, rec.wake_at or self.clock_now)
            if late or wait is None:
                return self._stop_late()
        result = await self._await(wait)
        if result is not None and result["action"] == "stop":
            self.doomed = True
            return result
        async with self.lock:
            stopped = self._stopped()
            if stopped is not None:
                return stopped
            now = self.clock_now
            rec.state = "complete"
            rec.end = now
            await self.write(self.tx(steps=[rec], log=[LogEntry("sleep_ended", now, key)]))
            return NONE_VALUE

    # -- step.wait_for_event ----------------------------------------------------------------

    async def wait_for_event(
        self, name: str, count: int, type: str, timeout: float | None
    ) -> Decision:
        self._enter()
        try:
            return await self._wait_for_event(name, count, type, timeout)
        finally:
            self._exit()

    async def _wait_for_event(
        self, name: str, count: int, type: str, timeout: float | None
    ) -> Decision:
        bad = self._check_step(name, count)
        if bad is not None:
            return bad
        limits = self.engine.limits
        try:
            check_event_type(type, limits)
        except WorkflowError as error:
            return _raise(error)
        seconds = DEFAULT_EVENT_TIMEOUT if timeout is None else finite_seconds(timeout)
        if seconds is None or seconds > limits.max_sleep_seconds:
            return _raise(
                WorkflowError(
                    f'Invalid timeout for wait_for_event "{name}": at most '
                    f"{limits.max_sleep_seconds / 86400:g} days"
                )
            )
        key = step_key(name, count)
        async with self.lock:
            late = self._late()
            stopped = None if late else self._stopped()
            if stopped is not None:
                return stopped
            self.asked.add(key)
            rec, mismatch = await self._recorded(key, "event")
            if mismatch is not None:
                return mismatch
            if rec is not None and rec.state == "complete":
                return {"action": "value", "value": rec.value}
            if rec is not None and rec.state == "errored":
                return _raise_dict(bounded_error(rec.error or {}))
            if key in self.waits or key in self.inflight:
                return _raise(WorkflowError(f'Step "{key}" is already in progress'))
            now = self.clock_now
            if rec is None:
                start = {"name": name, "count": count, "type": type, "deadline": now + seconds}
                buffered = await self.engine.store.oldest_event(self.uid, type)
                if buffered is not None:
                    value = {"payload": buffered.payload, "timestamp": buffered.ts, "type": type}
                    rec = StepRow(
                        key,
                        name,
                        count,
                        "event",
                        "complete",
                        start=now,
                        end=now,
                        value=value,
                        event_type=type,
                    )
                    self.records[key] = rec
                    await self.write(
                        self.tx(
                            steps=[rec],
                            consume_event=(buffered.seq, key),
                            log=[
                                LogEntry("wait_started", now, key, start),
                                LogEntry(
                                    "event_received", now, key, {"type": type, "output": value}
                                ),
                            ],
                        )
                    )
                    return {"action": "value", "value": value}
                rec = StepRow(
                    key,
                    name,
                    count,
                    "event",
                    "waiting",
                    start=now,
                    wake_at=now + seconds,
                    event_type=type,
                )
                self.records[key] = rec
                wait = None if late else self._add_wait(key, now + seconds)
                await self.write(
                    self.tx(steps=[rec], log=[LogEntry("wait_started", now, key, start)])
                )
            elif not late:
                wait = self._add_wait(key, rec.wake_at or now)
            if late or wait is None:
                return self._stop_late()
        result = await self._await(wait)
        if result is not None and result["action"] == "stop":
            self.doomed = True
            return result
        if result is not None:
            return result  # delivered by send_event, persisted there
        async with self.lock:
            stopped = self._stopped()
            if stopped is not None:
                return stopped
            if rec.state == "complete":
                return {"action": "value", "value": rec.value}
            now = self.clock_now
            waited = now - (rec.start or now)
            timed_out = WorkflowTimeoutError(
                f'Waiting for event "{type}" timed out after {round(waited * 1000)}ms'
            ).to_dict()
            rec.state = "errored"
            rec.error = timed_out
            rec.end = now
            await self.write(
                self.tx(
                    steps=[rec], log=[LogEntry("wait_timed_out", now, key, {"error": timed_out})]
                )
            )
            return _raise_dict(timed_out)

    def oldest_waiter(self, type: str, now: float) -> StepRow | None:
        waiting = [
            r
            for r in self.records.values()
            if r.kind == "event"
            and r.state == "waiting"
            and r.event_type == type
            and (r.wake_at or 0.0) > now
        ]
        return min(waiting, key=lambda r: r.start or 0.0) if waiting else None

    def delivered(self, rec: StepRow) -> None:
        """send_event completed ``rec`` (lock held): wake its waiter, or replay later."""
        wait = self.waits.pop(rec.key, None)
        if wait is not None and not wait.future.done():
            wait.future.set_result({"action": "value", "value": rec.value})
        elif self.stop_reason == "hibernate":
            self.rerun = True

    # -- the run --------------------------------------------------------------------------

    async def run(self) -> None:
        """Execute ``run(event, step)`` once and settle the instance by how it ended."""
        row = self.row
        workflow = self.engine._workflows[row.workflow]
        step = WorkflowStep(self, self.journal(), step_limit=self.engine.limits.step_limit)
        ctx = WorkflowContext(row.id, row.workflow, row.uid, row.scope, decode_value(row.envelope))
        event = WorkflowEvent(
            payload=decode_value(row.params),
            timestamp=to_datetime(row.created),
            instance_id=row.id,
            workflow_name=row.workflow,
        )
        how: str
        value: Any = None
        try:
            instance = workflow.cls(ctx, workflow.env)
            value = await instance.run(event, step)
            how = "return"
        except StopExecution:
            how = "stop"
        except ExecutionInterrupted as interrupted:
            how, value = "interrupted", interrupted.error
        except asyncio.CancelledError:
            if self.closed:
                return
            raise
        except Exception as error:
            how, value = "raise", error
        try:
            self.asked.update(step.hits())
            await self._settle(how, value)
        finally:
            if how != "interrupted":
                self.engine._interrupts.pop(self.uid, None)
            if self.closed:
                self.engine._ended(self)

    async def _settle(self, how: str, value: Any) -> None:
        if how == "interrupted":
            await self._interrupted(value)
            return
        if self.doomed or how == "stop":
            if self.stop_reason in ("pause", "replay", "hibernate") and self.inflight:
                await self._drain()
            async with self.lock:
                if self.closed:
                    return
                await self._stopped_for(self.stop_reason)
            return
        async with self.lock:
            if self.closed:
                return
            if not await self._divergence_ok():
                return
            now = self.clock_now
            if how == "return":
                try:
                    output = encode_value(value, path="the workflow's return value")
                except Exception as bad:
                    await self.fail(output_not_serialisable(bad))
                    return
                self.closed = True
                self.status = "complete"
                await self.write(
                    Tx(
                        self.ident,
                        instance={
                            "status": "complete",
                            "output": output,
                            "updated": now,
                            "wake_at": None,
                        },
                        log=[LogEntry("complete", now, None, {"output": output})],
                    )
                )
                return
            error = bounded_error(error_to_dict(value))
            self.closed = True
            self.status = "errored"
            await self.write(
                Tx(
                    self.ident,
                    instance={"status": "errored", "error": error, "updated": now, "wake_at": None},
                    log=[LogEntry("errored", now, None, {"error": error})],
                )
            )

    async def _drain(self) -> None:
        """Wait for the callbacks still in flight to report (S30), but no longer than their
        attempt timeouts (S17) and a margin: one that never reports (its runner went away
        with the run) then counts as a lost attempt (S8) instead of holding the instance."""
        timeouts = [
            float((self.records[k].config or {}).get("timeout", DEFAULT_TIMEOUT))
            for k in self.inflight
        ]
        try:
            await asyncio.wait_for(self.drained.wait(), max(timeouts) + DRAIN_MARGIN)
        except TimeoutError:
            async with self.lock:
                for key in list(self.inflight):
                    await self._failed(self.records[key], dict(LOST_ATTEMPT), True, None)

    async def _divergence_ok(self) -> bool:
        """S36 at the end of an execution; False when the instance was failed for it."""
        missing = sorted(self.prior_final - self.asked)
        if not missing:
            return True
        shown = ", ".join(f'"{k}"' for k in missing[:20]) + (" …" if len(missing) > 20 else "")
        message = (
            f"Replay diverged: step(s) {shown} completed in an earlier execution but this "
            "execution of run() did not ask for them. Workflow code must ask for the same "
            "steps, with the same names, on every replay: keep time, randomness and I/O "
            "inside step.do and branch only on step results. To run changed code, restart() "
            "the instance or create a new one."
        )
        if self.engine.on_divergence == "error":
            await self.fail(WorkflowNonDeterminismError(message))
            return False
        self.prior_final.clear()
        self.write_later(
            self.tx(
                log=[
                    LogEntry(
                        "divergence_warning",
                        self.clock_now,
                        None,
                        {"message": message, "steps": missing},
                    )
                ]
            )
        )
        return True

    async def _stopped_for(self, reason: StopReason | None) -> None:
        """The run unwound on our stop (lock held)."""
        now = self.clock_now
        if reason == "pause":
            self.closed = True
            if self.status != "paused":
                self.status = "paused"
                await self.write(
                    Tx(
                        self.ident,
                        instance={"status": "paused", "paused_at": now, "updated": now},
                        log=[LogEntry("paused", now)],
                    )
                )
            self.engine._ended(self)
            return
        if reason == "hibernate" and not self.rerun:
            if not await self._divergence_ok():
                return
            pending = [
                r.wake_at
                for r in self.records.values()
                if r.state in ("waiting", "retrying") and r.wake_at is not None
            ]
            if pending:
                wake = min(pending)
                self.closed = True
                self.status = "waiting"
                await self.write(
                    Tx(
                        self.ident,
                        instance={"status": "waiting", "wake_at": wake, "updated": now},
                        log=[LogEntry("hibernated", now, None, {"until": wake})],
                    )
                )
                self.engine._ended(self)
                self.engine._schedule(self.uid, wake)
                return
        if reason in ("hibernate", "replay"):
            self.closed = True
            self.engine._ended(self)
            self.engine._spawn_start(self.uid)
            return
        if reason is None:
            # StopExecution without our say-so (workflow code raised it): not ours to honour.
            await self.fail(WorkflowInternalError("run() stopped without the engine asking it to"))
            return
        self.closed = True

    async def _interrupted(self, error: WorkflowError) -> None:
        """ExecutionInterrupted: fail the attempts in flight with ``error``, then replay."""
        async with self.lock:
            if self.closed:
                return
            err = bounded_error(error.to_dict())
            lost = [self.records[k] for k in list(self.inflight)]
            self.stop("replay")
            for rec in lost:
                await self._failed(rec, err, True, None)
            streak = 0 if lost else self.engine._interrupts.get(self.uid, 0) + 1
            self.engine._interrupts[self.uid] = streak
            if streak >= MAX_CONSECUTIVE_INTERRUPTS:
                self.stop_reason = None
                await self.fail(error)
                return
            self.closed = True
            self.engine._ended(self)
            self.engine._spawn_start(self.uid)


_KIND_NAMES = {"do": "step.do", "sleep": "step.sleep", "event": "step.wait_for_event"}


def _bad_outcome(key: str, why: str) -> dict[str, str]:
    return {
        "name": "WorkflowInternalError",
        "message": f'Step "{key}" reported a malformed outcome: {why}',
    }

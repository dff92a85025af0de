"""``ChannelIsolate``: the host side of an isolate reached over an RPC channel.

Shared by the in-process backend (the guest on a thread) and the subprocess backend (the
guest in a confined child). It turns ``Isolate`` calls into calls on the guest's root
capability, hands the run's step ops over as a capability that validates every op, and
enforces from the host what the guest cannot enforce on itself:

- a call's wall time (``limits.wall_seconds``; time the guest spends waiting on the host's
  step ops does not count), and
- a step attempt's ``timeout`` plus a grace period: a synchronous callback blocks the guest's
  loop, so the guest cannot time itself out; the host kills the isolate (S17: the callback
  is really stopped);
- a CPU backstop per attempt (subprocess), should tenant code disarm the guest's own budget.

Either kills the isolate; the call that caused it gets ``IsolateLost`` with the matching
error, every other call in flight ``IsolateLost(WorkflowInternalError)``.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import itertools
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, Protocol

import msgspec

from ..rpc import (
    MAX_DEPTH,
    MAX_FRAME,
    MAX_TRUSTED_FRAME,
    ChannelClosedError,
    Connection,
    Exposures,
    Log,
)
from ..sdk import (
    Decision,
    IsolateLimitError,
    Journal,
    Outcome,
    Request,
    Response,
    StepOps,
    WorkflowError,
    WorkflowEvent,
    WorkflowInternalError,
    WorkflowTimeoutError,
)
from ._isolate import CRASH_MESSAGE, BackendName, CodeBundle, IsolateLost, LogSink, RunResult
from ._limits import IsolateLimits

STEP_GRACE = 2.0
"""Seconds past a step's timeout before the host kills a guest that has not reported."""
CPU_CHECK = 0.5
"""Seconds between two looks at the process's CPU time while an attempt runs."""
CPU_SLACK = 1.0
EXIT_WAIT = 5.0
_ids = itertools.count(1)


class ExitInfo(Protocol):
    @property
    def limit(self) -> str | None: ...

    @property
    def detail(self) -> str: ...


class ProcessHandle(Protocol):
    """What the subprocess backend's child offers (see /work/team/rpc-confine.md)."""

    pid: int

    async def kill(self, reason: str | None = None) -> None: ...

    async def wait_exit(self) -> Any: ...


# -- validation of what the guest sends ---------------------------------------------------


class _ErrorModel(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    name: str
    message: str
    limit: Literal["memory", "cpu", "wall", "stack"] | None = None


class _OutcomeModel(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    value: Any = msgspec.UNSET
    error: _ErrorModel | msgspec.UnsetType = msgspec.UNSET
    fatal: _ErrorModel | msgspec.UnsetType = msgspec.UNSET
    retryable: bool | msgspec.UnsetType = msgspec.UNSET
    delay: float | msgspec.UnsetType = msgspec.UNSET


class _RunResultModel(msgspec.Struct, forbid_unknown_fields=True):
    outcome: Literal["return", "raise", "stop"]
    hits: list[str] = []
    value: Any = None
    error: _ErrorModel | None = None


class _ResponseModel(msgspec.Struct, forbid_unknown_fields=True):
    status: int
    headers: dict[str, str]
    body: str


def _convert(value: Any, kind: Any, what: str) -> Any:
    try:
        return msgspec.convert(value, kind, strict=True)
    except msgspec.ValidationError as error:
        raise WorkflowError(f"invalid {what} from the isolate: {error}") from None


# -- the run's watchdog -------------------------------------------------------------------


class _Watch:
    """Deadlines of one call: its wall budget (paused while the host works on a step op),
    the timeouts of the step attempts it is running and, when the process can be asked for
    its CPU time, a CPU backstop per attempt.

    The backstop catches a guest whose own CPU budget was defeated (tenant code that
    disarmed SIGPROF): an attempt during which the whole isolate burnt more than twice the
    budget plus a second is over its limit. Generous on purpose: concurrent attempts share
    the process's CPU time, and the guest's own budget normally fires long before.
    """

    def __init__(
        self,
        wall_seconds: float,
        grace: float,
        *,
        cpu_seconds: float | None = None,
        cpu_probe: Callable[[], float] | None = None,
    ) -> None:
        self.wall_seconds = wall_seconds
        self.grace = grace
        self.cpu_limit = None if cpu_seconds is None else 2 * cpu_seconds + CPU_SLACK
        self.cpu_probe = cpu_probe if cpu_seconds is not None else None
        self._used = 0.0
        self._since: float | None = time.monotonic()
        self._host_ops = 0
        self.attempts: dict[tuple[str, int, int], tuple[float, float]] = {}
        self._cpu_at_start: dict[tuple[str, int, int], float] = {}
        self._planned = float("inf")
        self.changed = asyncio.Event()

    def host_op_started(self) -> None:
        if self._host_ops == 0 and self._since is not None:
            self._used += time.monotonic() - self._since
            self._since = None
        self._host_ops += 1

    def host_op_ended(self) -> None:
        self._host_ops -= 1
        if self._host_ops == 0:
            self._since = now = time.monotonic()
            self._wake_by(now + self.wall_seconds - self._used)

    def attempt_started(self, key: tuple[str, int, int], timeout: float) -> None:
        deadline = time.monotonic() + timeout + self.grace
        self.attempts[key] = (deadline, timeout)
        self._wake_by(deadline)

    def _wake_by(self, deadline: float) -> None:
        """Wake the watcher only when it plans to look later than ``deadline`` (most steps
        then cost the watcher nothing)."""
        if deadline < self._planned:
            self.changed.set()

    def attempt_ended(self, key: tuple[str, int, int]) -> None:
        self.attempts.pop(key, None)
        self._cpu_at_start.pop(key, None)

    def attempt_running(self, key: tuple[str, int, int]) -> None:
        """An attempt with no timeout still gets the CPU backstop."""
        if self.cpu_probe is not None and key not in self.attempts:
            self.attempts[key] = (float("inf"), 0.0)  # seen at the next periodic check

    def _over_cpu(self) -> bool:
        if self.cpu_probe is None or self.cpu_limit is None or not self.attempts:
            return False
        try:
            now = self.cpu_probe()
        except Exception:
            return False
        for key in self.attempts:
            # Taken at the first check, not at the start: no cost on the step's path.
            start = self._cpu_at_start.setdefault(key, now)
            if now - start > self.cpu_limit:
                return True
        return False

    def verdict(self) -> tuple[WorkflowError, str] | None:
        """The error to kill with when a deadline has passed."""
        now = time.monotonic()
        used = self._used + (now - self._since if self._since is not None else 0.0)
        if used >= self.wall_seconds:
            return IsolateLimitError("wall"), "wall"
        for deadline, timeout in self.attempts.values():
            if now >= deadline:
                message = f"Execution timed out after {round(timeout * 1000)}ms"
                return WorkflowTimeoutError(message), "timeout"
        if self._over_cpu():
            return IsolateLimitError("cpu"), "cpu"
        return None

    def next_check(self) -> float | None:
        """Seconds until the earliest deadline, or None while only the host is working."""
        now = time.monotonic()
        waits = [deadline - now for deadline, _ in self.attempts.values()]
        if self.cpu_probe is not None:
            waits.append(CPU_CHECK)
        if self._since is not None:
            waits.append(self.wall_seconds - self._used - (now - self._since))
        if not waits:
            self._planned = float("inf")
            return None
        wait = max(0.0, min(waits))
        self._planned = now + wait
        return wait


class _StepOpsCapability:
    """The run's step ops as handed to the guest: arguments type-checked, deadlines noted."""

    __rpc_methods__ = frozenset({"do_begin", "do_end", "sleep", "wait_for_event"})

    def __init__(self, ops: StepOps, watch: _Watch) -> None:
        self._ops = ops
        self._watch = watch
        self._active: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    async def _on_host(self, op: Awaitable[Decision]) -> Decision:
        """Await the host's op; the guest's wall clock stops meanwhile."""
        task = asyncio.current_task()
        assert task is not None
        self._active.add(task)
        self._idle.clear()
        self._watch.host_op_started()
        try:
            return await op
        finally:
            self._watch.host_op_ended()
            self._active.discard(task)
            if not self._active:
                self._idle.set()

    async def settle(self) -> None:
        """The run is over: withdraw ops still waiting on the host (an op the tenant left
        behind, say a ``wait_for_event`` in a task it never awaited) and let them unwind,
        so none outlives ``run_workflow``."""
        for task in list(self._active):
            task.cancel()
        await self._idle.wait()

    def _noted(self, name: str, count: int, decision: Decision) -> Decision:
        if isinstance(decision, dict) and decision.get("action") == "attempt":
            timeout = decision.get("timeout")
            key = (name, count, int(decision.get("attempt", 1)))
            if timeout is not None:
                self._watch.attempt_started(key, float(timeout))
            else:
                self._watch.attempt_running(key)
        return decision

    async def do_begin(self, name: Any, count: Any, config: Any) -> Decision:
        name, count, config = _convert(
            (name, count, config), tuple[str, int, dict[str, Any]], "do_begin arguments"
        )
        decision = await self._on_host(self._ops.do_begin(name, count, config))
        return self._noted(name, count, decision)

    async def do_end(self, name: Any, count: Any, attempt: Any, outcome: Any) -> Decision:
        name, count, attempt = _convert(
            (name, count, attempt), tuple[str, int, int], "do_end arguments"
        )
        model = _convert(outcome, _OutcomeModel, "step outcome")
        clean: dict[str, Any] = msgspec.to_builtins(model)
        self._watch.attempt_ended((name, count, attempt))
        result: Outcome = clean  # type: ignore[assignment]
        decision = await self._on_host(self._ops.do_end(name, count, attempt, result))
        return self._noted(name, count, decision)

    async def sleep(self, name: Any, count: Any, seconds: Any, until: Any) -> Decision:
        name, count, seconds, until = _convert(
            (name, count, seconds, until),
            tuple[str, int, float | None, float | None],
            "sleep arguments",
        )
        return await self._on_host(self._ops.sleep(name, count, seconds, until))

    async def wait_for_event(self, name: Any, count: Any, type: Any, timeout: Any) -> Decision:
        name, count, type, timeout = _convert(
            (name, count, type, timeout),
            tuple[str, int, str, float | None],
            "wait_for_event arguments",
        )
        return await self._on_host(self._ops.wait_for_event(name, count, type, timeout))


class _HostControl:
    """Capability 0 of the host side: what the guest may tell the host about itself."""

    __rpc_methods__ = frozenset({"retire"})

    def __init__(self, isolate: ChannelIsolate) -> None:
        self._isolate = isolate

    def retire(self, reason: Any) -> None:
        self._isolate._retire(str(reason)[:64])


# -- the isolate --------------------------------------------------------------------------


class ChannelIsolate:
    """An :class:`~dynamic_workflows.sandbox.Isolate` over a connected channel.

    ``process`` (optional) is the child behind it: killed when a limit is hit, and asked
    how it died when the channel closes unexpectedly. ``on_close`` runs once when the
    isolate is closed or lost (the in-process backend forgets its thread there).
    """

    def __init__(
        self,
        limits: IsolateLimits,
        *,
        backend: BackendName,
        process: ProcessHandle | None = None,
        confinement: Mapping[str, Any] | None = None,
        step_grace: float = STEP_GRACE,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.id = f"{backend}-{next(_ids)}"
        self.backend: BackendName = backend
        self.confinement: Mapping[str, Any] = dict(confinement or {})
        self.limits = limits
        self.step_grace = step_grace
        self._process = process
        self._on_close = on_close
        self._conn: Connection | None = None
        self._sinks: list[LogSink] = []
        self._log_budget = 0
        self._log_dropped = 0
        self._running: dict[str, int] = {}
        self._retiring: str | None = None
        self._calls = 0
        self._blame: tuple[_Watch, WorkflowError] | None = None
        self._death: WorkflowError | None = None
        self._dead = asyncio.Event()
        self._closing = False
        self._after_close_task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls,
        sock: socket.socket,
        limits: IsolateLimits,
        *,
        backend: BackendName,
        process: ProcessHandle | None = None,
        confinement: Mapping[str, Any] | None = None,
        exposures: Exposures | None = None,
        step_grace: float = STEP_GRACE,
        max_frame: int = MAX_FRAME,
        max_depth: int = MAX_DEPTH,
        on_close: Callable[[], None] | None = None,
    ) -> ChannelIsolate:
        """Open the channel on ``sock`` and wait for the guest's hello."""
        isolate = cls(
            limits,
            backend=backend,
            process=process,
            confinement=confinement,
            step_grace=step_grace,
            on_close=on_close,
        )
        isolate._conn = await Connection.open(
            sock,
            root=_HostControl(isolate),
            exposures=exposures,
            accept_caps=False,
            share_errors=False,
            max_frame=max_frame,
            max_send=MAX_TRUSTED_FRAME,
            max_depth=max_depth,
            on_log=isolate._on_log_frame,
        )
        isolate._conn.on_close(isolate._channel_closed)
        try:
            isolate.hello = await isolate._guarded("hello", [], _Watch(limits.wall_seconds, 0.0))
        except BaseException:
            isolate._conn.close("no hello from the guest")
            raise
        return isolate

    hello: dict[str, Any]

    # -- Isolate protocol ----------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._conn is not None and not self._conn.closed and self._retiring is None

    @property
    def retiring(self) -> str | None:
        """Why the guest asked to be replaced (``"memory"``), if it did."""
        return self._retiring

    @property
    def connection(self) -> Connection:
        assert self._conn is not None
        return self._conn

    def on_log(self, sink: LogSink) -> None:
        self._sinks.append(sink)

    async def load(self, code: CodeBundle) -> None:
        self.limits = code.limits
        bundle = {
            "main_module": code.main_module,
            "modules": dict(code.modules),
            "version": code.version,
            "env": dict(code.env),
            "limits": code.limits.to_wire(),
            "channel": {"max_frame": self.connection.max_frame},
            "pickled": {
                name: binascii.b2a_base64(data, newline=False).decode("ascii")
                for name, data in code.pickled_entrypoints.items()
            },
        }
        await self._guarded("load", [bundle], self._watch())

    async def run_workflow(
        self,
        entrypoint: str,
        event: WorkflowEvent,
        ops: StepOps,
        journal: Journal,
        *,
        step_limit: int,
    ) -> RunResult:
        watch = self._watch()
        adapter = _StepOpsCapability(ops, watch)
        instance_id = event.instance_id
        self._running[instance_id] = self._running.get(instance_id, 0) + 1
        args = [entrypoint, event.to_wire(), adapter, journal, step_limit]
        try:
            raw = await self._guarded("run_workflow", args, watch)
        finally:
            self._running[instance_id] -= 1
            if not self._running[instance_id]:
                del self._running[instance_id]
            if self._conn is not None:
                self._conn.revoke(adapter)
            await adapter.settle()
        try:
            result = msgspec.convert(raw, _RunResultModel, strict=True)
        except msgspec.ValidationError as error:
            self._lose_channel(f"invalid run result: {error}")
            raise IsolateLost.crash() from None
        return RunResult(
            outcome=result.outcome,
            value=result.value,
            error=None if result.error is None else msgspec.to_builtins(result.error),
            hits=tuple(result.hits),
        )

    async def fetch(self, entrypoint: str | None, request: Request) -> Response:
        raw = await self._guarded("fetch", [entrypoint, request.to_wire()], self._watch())
        try:
            model = msgspec.convert(raw, _ResponseModel, strict=True)
            return Response.from_wire(msgspec.to_builtins(model))
        except (msgspec.ValidationError, binascii.Error, ValueError) as error:
            raise WorkflowError(f"invalid response from the isolate: {error}") from None

    async def call(self, entrypoint: str, method: str, args: list[Any]) -> Any:
        return await self._guarded("call", [entrypoint, method, list(args)], self._watch())

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._conn is not None:
            self._conn.close("isolate closed by the host")
        if self._process is not None:
            with contextlib.suppress(Exception):
                await self._process.kill(None)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(EXIT_WAIT * 2):
                await self._dead.wait()

    # -- enforcement ---------------------------------------------------------------------

    def _watch(self) -> _Watch:
        probe = getattr(self._process, "cpu_seconds", None)
        return _Watch(
            self.limits.wall_seconds,
            self.step_grace,
            cpu_seconds=self.limits.cpu_seconds if callable(probe) else None,
            cpu_probe=probe if callable(probe) else None,
        )

    async def _guarded(self, method: str, args: list[Any], watch: _Watch) -> Any:
        """Call the guest's ``method`` under ``watch``; a death becomes ``IsolateLost``."""
        conn = self._conn
        if conn is None or conn.closed:
            raise IsolateLost(self._death or WorkflowInternalError(CRASH_MESSAGE))
        self._calls += 1
        self._log_budget += self.limits.max_log_bytes
        call = asyncio.ensure_future(conn.call(0, method, args))
        try:
            while not call.done():
                watch.changed.clear()
                waiters: set[asyncio.Future[Any]] = {call}
                changed = asyncio.ensure_future(watch.changed.wait())
                waiters.add(changed)
                try:
                    await asyncio.wait(
                        waiters, timeout=watch.next_check(), return_when="FIRST_COMPLETED"
                    )
                finally:
                    changed.cancel()
                if call.done():
                    break
                verdict = watch.verdict()
                if verdict is not None:
                    error, reason = verdict
                    await self._kill(watch, error, reason)
                    break
            return await call
        except ChannelClosedError:
            raise IsolateLost(await self._cause(watch)) from None
        except asyncio.CancelledError:
            call.cancel()
            raise

    async def _kill(self, watch: _Watch, error: WorkflowError, reason: str) -> None:
        if self._blame is None and not self._dead.is_set():
            self._blame = (watch, error)
        if self._conn is not None:
            self._conn.close(f"killed by the host: {reason}")
        if self._process is not None:
            with contextlib.suppress(Exception):
                await self._process.kill(reason if reason in ("wall", "cpu") else None)

    async def _cause(self, watch: _Watch) -> WorkflowError:
        """Why the channel closed, as the call under ``watch`` should see it."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(EXIT_WAIT * 2):
                await self._dead.wait()
        if self._blame is not None and self._blame[0] is watch:
            return self._blame[1]
        return self._death or WorkflowInternalError(CRASH_MESSAGE)

    def _channel_closed(self, conn: Connection) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # closed from outside any loop (interpreter shutdown)
            self._death = self._death or WorkflowInternalError(CRASH_MESSAGE)
            self._dead.set()
            return
        self._after_close_task = loop.create_task(self._after_close())

    async def _after_close(self) -> None:
        """Learn how the isolate ended (reaping its process), then wake the waiters."""
        limit = await self._reap() if self._process is not None else None
        if self._blame is None and not self._closing and limit in ("memory", "cpu", "wall"):
            self._death = IsolateLimitError(limit)
        else:
            self._death = WorkflowInternalError(CRASH_MESSAGE)
        self._dead.set()
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()

    async def _reap(self) -> str | None:
        process = self._process
        assert process is not None
        info: Any = None
        try:
            async with asyncio.timeout(EXIT_WAIT):
                info = await process.wait_exit()
        except TimeoutError:
            # The channel is gone but the process is not: it is of no use any more.
            with contextlib.suppress(Exception):
                await process.kill(None)
            with contextlib.suppress(Exception):
                info = await process.wait_exit()
        except Exception:
            return None
        limit = getattr(info, "limit", None)
        return limit if isinstance(limit, str) else None

    def _lose_channel(self, reason: str) -> None:
        if self._conn is not None:
            self._conn.close(reason)

    def _retire(self, reason: str) -> None:
        self._retiring = self._retiring or reason

    # -- logs ----------------------------------------------------------------------------

    def _on_log_frame(self, frame: Log) -> None:
        size = len(frame.line) + 1
        if size > self._log_budget:
            self._log_dropped += size
            return
        self._log_budget -= size
        instance_id = frame.instance_id if frame.instance_id in self._running else None
        record = {
            "stream": frame.stream,
            "line": frame.line[:16384],
            "instance_id": instance_id,
            "ts": frame.ts if frame.ts > 0 else time.time(),
        }
        for sink in list(self._sinks):
            with contextlib.suppress(Exception):
                sink(record)

"""``Workflows``: bindings, instance handles, the scheduler of durable timers, admin reads.

One process owns a SQLite store, so coordination is in memory: each instance has a lock;
every transition of an instance (a step decision, pause, an event, terminate) happens under
it and is one store transaction. An instance is in memory only while it executes; a
hibernated one is a row with ``wake_at`` and an entry in the timer heap.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import uuid
import weakref
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..sdk import (
    InstanceNotFoundError,
    NotJSONError,
    WorkflowError,
    WorkflowFatalError,
    decode_value,
    encode_value,
)
from ._clock import Clock, SystemClock, TimerHandle
from ._execution import Execution
from ._json import dumps
from ._policy import Limits, check_event_type, check_instance_id, size_text
from ._store import (
    DuplicateInstanceError,
    Durability,
    Ident,
    InstanceRow,
    LogEntry,
    LogRecord,
    NewEvent,
    StepRow,
    Store,
    Tx,
    open_store,
)
from ._timeline import Timeline
from ._types import TERMINAL, InstanceStatus

Divergence = Literal["error", "warn"]
MAX_CACHED_TIMELINES = 1024  # folded status timelines kept in memory (LRU)


@dataclass(frozen=True)
class _Registered:
    name: str
    cls: type[Any]
    env: Any


class Workflows:
    """The durable workflow engine (see ENGINE_API.md)."""

    def __init__(
        self,
        store: str | Store = "sqlite:///.dynwf/state.db",
        *,
        clock: Clock | None = None,
        step_limit: int = 10_000,
        hibernate_after: float = 60.0,
        on_divergence: Divergence = "error",
        durability: Durability = "fsync",
        max_payload_bytes: int = 1 << 20,
        max_step_name: int = 256,
        max_id_length: int = 100,
        max_batch: int = 100,
        max_sleep_seconds: float = 365 * 86400.0,
    ) -> None:
        if on_divergence not in ("error", "warn"):
            raise ValueError("on_divergence must be 'error' or 'warn'")
        self.store: Store = (
            open_store(store, durability=durability) if isinstance(store, str) else store
        )
        self.clock: Clock = clock or SystemClock()
        self.hibernate_after = float(hibernate_after)
        self.on_divergence: Divergence = on_divergence
        self.limits = Limits(
            max_payload_bytes=max_payload_bytes,
            max_step_name=max_step_name,
            max_id_length=max_id_length,
            max_batch=max_batch,
            max_sleep_seconds=float(max_sleep_seconds),
            step_limit=step_limit,
        )
        self._workflows: dict[str, _Registered] = {}
        self._active: dict[str, Execution] = {}
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._fresh: dict[str, InstanceRow] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._interrupts: dict[str, int] = {}
        self._heap: list[tuple[float, str]] = []
        self._wake: dict[str, float] = {}
        self._timer: TimerHandle | None = None
        self._timer_at: float | None = None
        self._watchers: set[tuple[str | None, asyncio.Queue[LogRecord]]] = set()
        self._status_waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._running = False
        self._timelines: dict[str, Timeline] = {}

    # -- setup ------------------------------------------------------------------------------

    def register(self, name: str, cls: type[Any], env: Any = None) -> None:
        """Register a workflow class under a binding name; checked now, not at first run."""
        if not isinstance(name, str) or not name:
            raise WorkflowError("a workflow binding name must be a non-empty string")
        if name in self._workflows:
            raise WorkflowError(f"workflow {name!r} is already registered")
        if not inspect.isclass(cls):
            raise WorkflowError(
                f"workflow {name!r} must be a class with `async def run(self, event, step)`"
            )
        run = getattr(cls, "run", None)
        if run is None or not inspect.iscoroutinefunction(run):
            raise WorkflowError(
                f"workflow {name!r}: {cls.__name__}.run must be `async def run(self, event, step)`"
            )
        self._workflows[name] = _Registered(name, cls, {} if env is None else env)
        if self._running:
            self._spawn(self._resume_workflow(name))

    def binding(self, name: str) -> WorkflowBinding:
        if name not in self._workflows:
            raise WorkflowError(f"no workflow is registered as {name!r}")
        return WorkflowBinding(self, name)

    async def __aenter__(self) -> Workflows:
        await self.store.open()
        self._running = True
        try:
            await self._resume_all()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop executing (state stays as it is in the store) and close the store."""
        self._running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for ex in list(self._active.values()):
            ex.stop("shutdown")
            if ex.task is not None:
                ex.task.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._active.clear()
        for futures in self._status_waiters.values():
            for future in futures:
                if not future.done():
                    future.set_result(None)
        await self.store.close()

    async def _resume_all(self) -> None:
        for row in await self.store.unfinished():
            await self._resume_row(row)

    async def _resume_workflow(self, name: str) -> None:
        for row in await self.store.unfinished():
            if row.workflow == name:
                await self._resume_row(row)

    async def _resume_row(self, row: InstanceRow) -> None:
        if row.status == "waitingForPause":
            now = self.clock.now()
            await self._commit(
                Tx(
                    _ident(row),
                    instance={"status": "paused", "paused_at": now, "updated": now},
                    log=[LogEntry("paused", now)],
                )
            )
        elif row.workflow not in self._workflows or row.uid in self._active:
            return
        elif row.status == "waiting" and row.wake_at is not None:
            self._schedule(row.uid, row.wake_at)
        else:
            self._spawn_start(row.uid)

    def _require_running(self) -> None:
        if not self._running:
            raise WorkflowError("the engine is not running: use `async with engine:`")

    # -- plumbing -------------------------------------------------------------------------

    def _lock(self, uid: str) -> asyncio.Lock:
        lock = self._locks.get(uid)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[uid] = lock
        return lock

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _published(self, tx: Tx, future: asyncio.Future[list[LogRecord]]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        records = future.result()
        if self._watchers:
            for uid, queue in list(self._watchers):
                for record in records:
                    if uid is None or record["uid"] == uid:
                        queue.put_nowait(record)
        if tx.delete or "status" in tx.instance:
            self._notify(tx.ident.uid)

    def _notify(self, uid: str) -> None:
        for future in self._status_waiters.get(uid, ()):
            if not future.done():
                future.set_result(None)

    async def _commit(self, tx: Tx) -> list[LogRecord]:
        future = self.store.commit(tx)
        future.add_done_callback(lambda f: self._published(tx, f))
        return await future

    def _commit_later(self, tx: Tx) -> None:
        future = self.store.commit(tx)
        future.add_done_callback(lambda f: self._published(tx, f))

    # -- executions and timers ----------------------------------------------------------------

    def _spawn_start(self, uid: str) -> None:
        if self._running:
            self._spawn(self._start(uid))

    async def _start(self, uid: str) -> None:
        async with self._lock(uid):
            if not self._running or uid in self._active:
                return
            row = self._fresh.pop(uid, None)
            steps: list[StepRow] = []
            if row is None:
                loaded = await self.store.load(uid)
                if loaded is None:
                    return
                row, steps = loaded
            if (
                row.status not in ("queued", "running", "waiting")
                or row.workflow not in self._workflows
            ):
                return
            self._unschedule(uid)
            ex = Execution(self, row, steps)
            self._active[uid] = ex
            now = self.clock.now()
            ex.status = "running"
            self._commit_later(
                Tx(
                    ex.ident,
                    instance={"status": "running", "wake_at": None, "updated": now},
                    log=[LogEntry("started", now)],
                )
            )
            ex.task = self._spawn(ex.run())

    def _ended(self, ex: Execution) -> None:
        if self._active.get(ex.uid) is ex:
            del self._active[ex.uid]

    def _schedule(self, uid: str, when: float) -> None:
        self._wake[uid] = when
        heapq.heappush(self._heap, (when, uid))
        self._arm()

    def _unschedule(self, uid: str) -> None:
        self._wake.pop(uid, None)

    def _arm(self) -> None:
        while self._heap and self._wake.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        if not self._heap or not self._running:
            return
        earliest = self._heap[0][0]
        if self._timer is not None:
            if self._timer_at == earliest:
                return
            self._timer.cancel()
        self._timer_at = earliest
        self._timer = self.clock.call_at(earliest, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        now = self.clock.now()
        while self._heap and self._heap[0][0] <= now:
            when, uid = heapq.heappop(self._heap)
            if self._wake.get(uid) == when:
                del self._wake[uid]
                self._spawn_start(uid)
        self._arm()

    # -- creating -------------------------------------------------------------------------

    def _check_params(self, params: Any, field: str = "params") -> Any:
        try:
            encoded = encode_value({} if params is None else params, path=field)
        except NotJSONError as error:
            raise WorkflowFatalError(f"Workflow {field} are not a JSON value: {error}") from None
        size = len(dumps(encoded).encode("utf-8"))
        if size > self.limits.max_payload_bytes:
            raise WorkflowError(
                f"Workflow {field} are {size} bytes, over the limit of "
                f"{size_text(self.limits.max_payload_bytes)} (max_payload_bytes)"
            )
        return encoded

    async def _create(
        self,
        workflow: str,
        scope: str,
        envelope: Any,
        items: list[tuple[Any, Any]],
        *,
        batch: bool,
    ) -> list[InstanceHandle]:
        self._require_running()
        now = self.clock.now()
        rows: list[InstanceRow] = []
        for given_id, params in items:
            instance_id = (
                str(uuid.uuid4()) if given_id is None else check_instance_id(given_id, self.limits)
            )
            rows.append(
                InstanceRow(
                    uid=uuid.uuid4().hex,
                    workflow=workflow,
                    scope=scope,
                    id=instance_id,
                    params=self._check_params(params),
                    envelope=envelope,
                    status="queued",
                    created=now,
                    updated=now,
                )
            )
        logs = [LogEntry("queued", now, None, {"id": r.id}) for r in rows]
        try:
            inserted, records = await self.store.create(rows, logs, skip_existing=batch)
        except DuplicateInstanceError as error:
            raise WorkflowError(
                f"(instance.already_exists) Workflow instance {error.instance_id!r} already "
                "exists; use restart() to run it again"
            ) from None
        for uid, queue in list(self._watchers):
            for record in records:
                if uid is None or record["uid"] == uid:
                    queue.put_nowait(record)
        handles = []
        for row, ok in zip(rows, inserted, strict=True):
            if ok:
                self._fresh[row.uid] = row
                self._spawn_start(row.uid)
                handles.append(InstanceHandle(self, row.uid, row.id, row.workflow, row.scope))
        return handles

    async def _find(self, workflow: str, scope: str, instance_id: str) -> InstanceHandle:
        self._require_running()
        if not isinstance(instance_id, str):
            raise InstanceNotFoundError(str(instance_id))
        row = await self.store.find(workflow, scope, instance_id)
        if row is None:
            raise InstanceNotFoundError(instance_id)
        return InstanceHandle(self, row.uid, row.id, row.workflow, row.scope)

    # -- instance operations (all under the instance's lock) ------------------------------------

    async def _row(self, uid: str, instance_id: str) -> InstanceRow:
        row = await self.store.get(uid)
        if row is None:
            raise InstanceNotFoundError(instance_id)
        return row

    async def _status(self, uid: str, instance_id: str) -> InstanceStatus:
        row = await self._row(uid, instance_id)
        folded = self._timelines.pop(uid, None) or Timeline()
        folded.fold(await self.store.history(uid, folded.seq))
        self._timelines[uid] = folded  # most recently used last
        while len(self._timelines) > MAX_CACHED_TIMELINES:
            del self._timelines[next(iter(self._timelines))]
        return _status_of(row, folded.steps())

    async def _pause(self, uid: str, instance_id: str) -> None:
        async with self._lock(uid):
            self._fresh.pop(uid, None)
            row = await self._row(uid, instance_id)
            ex = self._active.get(uid)
            if ex is not None and not ex.closed:
                if ex.stop_reason == "pause":
                    return
                ex.stop("pause")
                tx = ex.tx()
                if tx.instance:
                    await self._commit(tx)
                return
            if row.status not in ("running", "waiting", "queued"):
                return
            now = self.clock.now()
            self._unschedule(uid)
            await self._commit(
                Tx(
                    _ident(row),
                    instance={
                        "status": "paused",
                        "paused_at": now,
                        "updated": now,
                        "wake_at": None,
                    },
                    log=[LogEntry("paused", now)],
                )
            )

    async def _resume(self, uid: str, instance_id: str) -> None:
        async with self._lock(uid):
            row = await self._row(uid, instance_id)
            now = self.clock.now()
            ex = self._active.get(uid)
            if ex is not None and not ex.closed and ex.stop_reason == "pause":
                shift = None
                if ex.status == "paused" and row.paused_at is not None:
                    shift = now - row.paused_at
                    for rec in ex.records.values():
                        if rec.state in ("waiting", "retrying") and rec.wake_at is not None:
                            rec.wake_at += shift
                ex.stop_reason = "replay" if ex.doomed else None
                ex.status = "running"
                await self._commit(
                    Tx(
                        ex.ident,
                        instance={"status": "running", "paused_at": None, "updated": now},
                        shift_timers=shift,
                        log=[LogEntry("resumed", now)],
                    )
                )
                return
            if row.status != "paused" or ex is not None:
                return
            shift = now - row.paused_at if row.paused_at is not None else None
            await self._commit(
                Tx(
                    _ident(row),
                    instance={"status": "running", "paused_at": None, "updated": now},
                    shift_timers=shift,
                    log=[LogEntry("resumed", now, None, {"paused_for": shift})],
                )
            )
            self._spawn_start(uid)

    def _stop_execution(self, uid: str, reason: Literal["terminate", "restart", "delete"]) -> None:
        self._fresh.pop(uid, None)
        self._unschedule(uid)
        ex = self._active.pop(uid, None)
        if ex is None:
            return
        ex.stop(reason)
        ex.closed = True
        task = ex.task
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()

    async def _terminate(self, uid: str, instance_id: str) -> None:
        async with self._lock(uid):
            row = await self._row(uid, instance_id)
            if row.status in TERMINAL:
                raise WorkflowError(
                    "(instance.cannot_terminate) Cannot terminate instance since its on a "
                    "finite state"
                )
            self._stop_execution(uid, "terminate")
            now = self.clock.now()
            await self._commit(
                Tx(
                    _ident(row),
                    instance={
                        "status": "terminated",
                        "updated": now,
                        "wake_at": None,
                        "paused_at": None,
                    },
                    log=[LogEntry("terminated", now)],
                )
            )

    async def _restart(self, uid: str, instance_id: str) -> None:
        async with self._lock(uid):
            row = await self._row(uid, instance_id)
            self._stop_execution(uid, "restart")
            self._interrupts.pop(uid, None)
            now = self.clock.now()
            await self._commit(
                Tx(
                    _ident(row),
                    instance={
                        "status": "running",
                        "output": None,
                        "error": None,
                        "updated": now,
                        "wake_at": None,
                        "paused_at": None,
                    },
                    reset=True,
                    log=[LogEntry("restarted", now)],
                )
            )
            self._spawn_start(uid)

    async def _delete(self, uid: str, instance_id: str) -> None:
        async with self._lock(uid):
            row = await self._row(uid, instance_id)
            self._stop_execution(uid, "delete")
            self._interrupts.pop(uid, None)
            self._timelines.pop(uid, None)
            await self._commit(
                Tx(_ident(row), delete=True, log=[LogEntry("deleted", self.clock.now())])
            )

    async def _send_event(self, uid: str, instance_id: str, type: str, payload: Any) -> None:
        check_event_type(type, self.limits)
        try:
            encoded = encode_value(payload, path="payload")
        except NotJSONError as error:
            raise WorkflowFatalError(f"Event payload is not a JSON value: {error}") from None
        size = len(dumps(encoded).encode("utf-8"))
        if size > self.limits.max_payload_bytes:
            raise WorkflowError(
                f"Event payload is {size} bytes, over the limit of "
                f"{size_text(self.limits.max_payload_bytes)} (max_payload_bytes)"
            )
        async with self._lock(uid):
            row = await self._row(uid, instance_id)
            if row.status in TERMINAL:
                raise WorkflowError(
                    f"Cannot send event {type!r} to instance {instance_id!r}: it is {row.status}"
                )
            now = self.clock.now()
            ex = self._active.get(uid)
            live = ex is not None and not ex.closed
            if live:
                assert ex is not None
                rec = ex.oldest_waiter(type, now)
            else:
                rec = await self.store.oldest_waiter(uid, type, now)
            if rec is None:
                await self._commit(
                    Tx(
                        _ident(row),
                        add_event=NewEvent(type, encoded, now),
                        log=[
                            LogEntry("event_received", now, None, {"type": type, "buffered": True})
                        ],
                    )
                )
                return
            value = {"payload": encoded, "timestamp": now, "type": type}
            rec.state = "complete"
            rec.value = value
            rec.end = now
            log = [LogEntry("event_received", now, rec.key, {"type": type, "output": value})]
            if live:
                assert ex is not None
                ex.delivered(rec)
                await self._commit(
                    ex.tx(steps=[rec], add_event=NewEvent(type, encoded, now, rec.key), log=log)
                )
                ex._check_idle_soon()
                return
            await self._commit(
                Tx(
                    _ident(row),
                    steps=[rec],
                    add_event=NewEvent(type, encoded, now, rec.key),
                    log=log,
                )
            )
            if row.status == "waiting":
                self._spawn_start(uid)

    async def _wait_for_status(
        self, uid: str, instance_id: str, wanted: set[str]
    ) -> InstanceStatus:
        while True:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waiters = self._status_waiters.setdefault(uid, set())
            waiters.add(future)
            try:
                row = await self._row(uid, instance_id)  # cheap; the timeline only at the end
                if row.status in wanted:
                    status = await self._status(uid, instance_id)
                    if status.status in wanted:
                        return status
                    continue
                if not self._running:
                    raise WorkflowError("the engine stopped while waiting for a status")
                await future
            finally:
                waiters.discard(future)
                if not waiters:
                    self._status_waiters.pop(uid, None)

    # -- admin ----------------------------------------------------------------------------------

    async def list_instances(
        self,
        workflow: str | None = None,
        scope: str | None = None,
        status: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[InstanceStatus]:
        """Instances, newest first (``steps`` empty: read one instance for its timeline)."""
        limit = max(0, min(int(limit), 1000))
        rows = await self.store.list_instances(workflow, scope, status, limit, max(0, int(offset)))
        return [_status_of(row, []) for row in rows]

    async def count_instances(
        self, workflow: str | None = None, scope: str | None = None, status: str | None = None
    ) -> int:
        return await self.store.count_instances(workflow, scope, status)

    async def instance(self, uid: str) -> InstanceHandle:
        """A handle by internal uid, whatever its scope (admin only)."""
        row = await self.store.get(uid)
        if row is None:
            raise InstanceNotFoundError(uid)
        return InstanceHandle(self, row.uid, row.id, row.workflow, row.scope)

    async def history(self, uid: str, after_seq: int = 0) -> list[LogRecord]:
        return await self.store.history(uid, after_seq)

    async def watch(self, uid: str | None = None) -> AsyncIterator[LogRecord]:
        """Log records as they are committed, from now on (``history`` has the past)."""
        queue: asyncio.Queue[LogRecord] = asyncio.Queue()
        entry = (uid, queue)
        self._watchers.add(entry)
        try:
            while True:
                yield await queue.get()
        finally:
            self._watchers.discard(entry)


def _ident(row: InstanceRow) -> Ident:
    return Ident(row.uid, row.id, row.workflow, row.scope)


def _status_of(row: InstanceRow, steps: list[dict[str, Any]]) -> InstanceStatus:
    return InstanceStatus(
        status=row.status,
        output=decode_value(row.output) if row.status == "complete" else None,
        error=row.error if row.status == "errored" else None,
        steps=steps,
        id=row.id,
        workflow=row.workflow,
        created=row.created,
        updated=row.updated,
        uid=row.uid,
        scope=row.scope,
    )


class InstanceHandle:
    """A handle on one instance (S27–S34). ``uid`` is the internal key (admin side)."""

    def __init__(self, engine: Workflows, uid: str, id: str, workflow: str, scope: str) -> None:
        self._engine = engine
        self.uid = uid
        self.id = id
        self.workflow = workflow
        self.scope = scope

    def __repr__(self) -> str:
        return f"InstanceHandle(id={self.id!r}, workflow={self.workflow!r})"

    async def status(self) -> InstanceStatus:
        return await self._engine._status(self.uid, self.id)

    async def pause(self) -> None:
        await self._engine._pause(self.uid, self.id)

    async def resume(self) -> None:
        await self._engine._resume(self.uid, self.id)

    async def terminate(self) -> None:
        await self._engine._terminate(self.uid, self.id)

    async def restart(self) -> None:
        await self._engine._restart(self.uid, self.id)

    async def delete(self) -> None:
        await self._engine._delete(self.uid, self.id)

    async def send_event(self, type: str, payload: Any = None) -> None:
        await self._engine._send_event(self.uid, self.id, type, payload)

    async def wait_for_status(self, *statuses: str) -> InstanceStatus:
        """Wait until the status is one of ``statuses`` (use ``anyio.fail_after`` as a guard)."""
        if not statuses:
            raise WorkflowError("wait_for_status needs at least one status")
        return await self._engine._wait_for_status(self.uid, self.id, set(statuses))

    async def envelope(self) -> Any:
        """The dispatcher's hidden metadata (admin only; never shown by ``status()``)."""
        row = await self._engine._row(self.uid, self.id)
        return decode_value(row.envelope)


class WorkflowBinding:
    """``create`` / ``create_batch`` / ``get`` for one workflow within one scope."""

    def __init__(self, engine: Workflows, name: str, scope: str = "", envelope: Any = None) -> None:
        self._engine = engine
        self.name = name
        self.scope = scope
        self._envelope = envelope

    def scoped(self, scope: str, envelope: Mapping[str, Any] | None = None) -> WorkflowBinding:
        """The same workflow seen from ``scope``; instances it creates carry ``envelope``."""
        if not isinstance(scope, str):
            raise WorkflowError("a scope must be a string")
        if envelope is not None:
            try:
                encoded = encode_value(dict(envelope), allow_bytes=False, path="envelope")
            except (NotJSONError, TypeError, ValueError) as error:
                raise WorkflowError(f"an envelope must be a JSON object: {error}") from None
            envelope = encoded
        return WorkflowBinding(self._engine, self.name, scope, envelope)

    async def create(self, id: str | None = None, params: Any = None) -> InstanceHandle:
        handles = await self._engine._create(
            self.name, self.scope, self._envelope, [(id, params)], batch=False
        )
        return handles[0]

    async def create_batch(self, items: list[Mapping[str, Any]]) -> list[InstanceHandle]:
        limits = self._engine.limits
        if not isinstance(items, list | tuple) or not items:
            raise WorkflowError("batchCreate should have at least 1 instance")
        if len(items) > limits.max_batch:
            raise WorkflowError(
                f"batchCreate accepts at most {limits.max_batch} instances (max_batch), "
                f"got {len(items)}"
            )
        parsed: list[tuple[Any, Any]] = []
        for item in items:
            if not isinstance(item, Mapping) or set(item) - {"id", "params"}:
                raise WorkflowError("each batchCreate item is {'id'?: str, 'params'?: JSON}")
            parsed.append((item.get("id"), item.get("params")))
        return await self._engine._create(self.name, self.scope, self._envelope, parsed, batch=True)

    async def get(self, id: str) -> InstanceHandle:
        return await self._engine._find(self.name, self.scope, id)

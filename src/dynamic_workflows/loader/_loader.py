"""``WorkerLoader``: per-tenant isolates loaded on demand, cached by id, evicted by LRU cap
and idle time, reloaded invisibly after a crash or an eviction.

The loader knows isolates only through the ``Isolate`` protocol, so a tenant may run in a
subprocess, in wasm or (trusted code) in-process. A run interrupted by a lost isolate is
handed back to the engine as ``ExecutionInterrupted``: the engine fails the attempts in flight
and replays the run, which lands in a fresh isolate.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import anyio

from ..runtime import ExecutionInterrupted
from ..sandbox import (
    BackendName,
    Isolate,
    IsolateBackend,
    IsolateLost,
    open_backend,
)
from ..sdk import (
    Request,
    Response,
    StopExecution,
    WorkflowError,
    WorkflowEvent,
    WorkflowStep,
    decode_value,
    error_from_dict,
)
from ._code import CodeStore, WorkerCode

CodeFactory = Callable[[], WorkerCode | Awaitable[WorkerCode]]
SlotKey = tuple[str, str, int]
"""(worker id, code version, deployment generation): a redeploy with the same code but a new
env gets fresh isolates, while runs in flight finish on the old ones."""
LogRecord = dict[str, Any]


@dataclass(frozen=True)
class BindContext:
    """What an env value learns when it is handed to one tenant's isolate."""

    worker_id: str
    version: str
    loader_env: Mapping[str, Any]


@runtime_checkable
class WorkerBindable(Protocol):
    """An env value that becomes a per-worker capability when its isolate starts (the
    dispatch glue's wrapped binding learns the dispatcher's env and the code version)."""

    def bind_to_worker(self, context: BindContext) -> Any: ...


class _Slot:
    """One live isolate for (worker id, version), with its use count."""

    def __init__(self, key: SlotKey) -> None:
        self.key = key
        self.isolate: Isolate | None = None
        self.ready = anyio.Event()
        self.error: BaseException | None = None
        self.in_flight = 0
        self.last_used = time.monotonic()
        self.retired = False


class WorkerLoader:
    """Loads each tenant's code into its own isolate, once, and keeps it warm."""

    def __init__(
        self,
        *,
        backend: BackendName = "subprocess",
        env: Mapping[str, Any] | None = None,
        max_isolates: int = 100,
        idle_timeout: float = 300.0,
        code_dir: str | Path = ".dynwf/code",
        backend_options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.default_backend: BackendName = backend
        self.env: dict[str, Any] = dict(env or {})
        self.max_isolates = max_isolates
        self.idle_timeout = idle_timeout
        self.code_store = CodeStore(code_dir)
        self._backend_options = {k: dict(v) for k, v in (backend_options or {}).items()}
        self._backends: dict[str, IsolateBackend] = {}
        self._backend_lock = anyio.Lock()
        self._stubs: dict[str, WorkerStub] = {}
        self._slots: OrderedDict[SlotKey, _Slot] = OrderedDict()
        self._generations = itertools.count(1)
        self._sinks: list[Callable[[LogRecord], None]] = []
        self._task_group: anyio.abc.TaskGroup | None = None

    # -- lifecycle -------------------------------------------------------------------------
    async def __aenter__(self) -> WorkerLoader:
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._reaper)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task_group is not None:
            self._task_group.cancel_scope.cancel()
            await self._task_group.__aexit__(None, None, None)
            self._task_group = None
        await self.aclose()

    async def aclose(self) -> None:
        """Close every isolate and backend."""
        with anyio.CancelScope(shield=True):
            for slot in list(self._slots.values()):
                await self._close_slot(slot)
            self._slots.clear()
            for backend in self._backends.values():
                with contextlib.suppress(Exception):
                    await backend.aclose()
            self._backends.clear()

    # -- public API ------------------------------------------------------------------------
    def get(self, worker_id: str, factory: CodeFactory) -> WorkerStub:
        """The stub for ``worker_id``; ``factory`` runs only when the id is not cached."""
        stub = self._stubs.get(worker_id)
        if stub is None:
            stub = WorkerStub(self, worker_id, factory, next(self._generations))
            self._stubs[worker_id] = stub
        return stub

    def _current(self, key: SlotKey) -> bool:
        stub = self._stubs.get(key[0])
        return stub is not None and stub.generation == key[2]

    def invalidate(self, worker_id: str) -> None:
        """Forget the cached code of ``worker_id``: the next ``get`` runs its factory again.
        Running instances keep their pinned version (S39)."""
        self._stubs.pop(worker_id, None)

    def deploy(self, worker_id: str, code: WorkerCode) -> WorkerStub:
        """Replace ``worker_id``'s code with ``code`` (a new version for new instances)."""
        stub = WorkerStub(self, worker_id, lambda: code, next(self._generations))
        self._stubs[worker_id] = stub
        return stub

    async def evict(self, worker_id: str | None = None) -> None:
        """Close the idle isolates of ``worker_id`` (or all); they reload on next use."""
        for slot in list(self._slots.values()):
            if slot.in_flight == 0 and worker_id in (None, slot.key[0]):
                await self._discard(slot)

    def on_log(self, sink: Callable[[LogRecord], None]) -> None:
        self._sinks.append(sink)

    def isolates(self) -> list[dict[str, Any]]:
        """Live isolates: worker id, version, backend, confinement report, calls in flight."""
        return [
            {
                "worker": slot.key[0],
                "version": slot.key[1],
                "backend": slot.isolate.backend,
                "confinement": dict(slot.isolate.confinement),
                "in_flight": slot.in_flight,
                "alive": slot.isolate.alive,
            }
            for slot in self._slots.values()
            if slot.isolate is not None
        ]

    # -- isolates --------------------------------------------------------------------------
    async def backend(self, name: BackendName) -> IsolateBackend:
        async with self._backend_lock:
            backend = self._backends.get(name)
            if backend is None:
                backend = await open_backend(name, **self._backend_options.get(name, {}))
                self._backends[name] = backend
            return backend

    @contextlib.asynccontextmanager
    async def _use(self, stub: WorkerStub, code: WorkerCode) -> AsyncIterator[Isolate]:
        slot = await self._acquire(stub, code)
        slot.in_flight += 1
        try:
            assert slot.isolate is not None
            yield slot.isolate
        except IsolateLost:
            await self._discard(slot)
            raise
        finally:
            slot.in_flight -= 1
            slot.last_used = time.monotonic()
            with anyio.CancelScope(shield=True):
                if slot.retired and slot.in_flight == 0:
                    await self._close_slot(slot)
                if len(self._slots) > self.max_isolates:  # a burst went past the cap: shed now
                    await self._evict_over_cap()

    async def _acquire(self, stub: WorkerStub, code: WorkerCode) -> _Slot:
        worker_id = stub.id
        key = (worker_id, code.version, stub.generation)
        slot = self._slots.get(key)
        if slot is not None and slot.isolate is not None and not slot.isolate.alive:
            # retiring (say after a MemoryError): new calls get a fresh isolate, and this one
            # closes once the calls still in it have finished
            del self._slots[key]
            slot.retired = True
            if slot.in_flight == 0:
                await self._close_slot(slot)
            slot = None
        if slot is None:
            slot = _Slot(key)
            self._slots[key] = slot
            await self._evict_over_cap()
            try:
                slot.isolate = await self._start(worker_id, code)
            except BaseException as error:
                slot.error = error
                self._slots.pop(key, None)
                slot.ready.set()
                raise
            slot.ready.set()
        else:
            await slot.ready.wait()
            if slot.error is not None:
                raise slot.error
        self._slots.move_to_end(key)
        slot.last_used = time.monotonic()
        return slot

    async def _start(self, worker_id: str, code: WorkerCode) -> Isolate:
        self.code_store.save(code)
        backend = await self.backend(code.backend or self.default_backend)
        isolate = await backend.new_isolate(code.limits)
        context = BindContext(worker_id, code.version, self.env)
        env = {
            name: value.bind_to_worker(context) if isinstance(value, WorkerBindable) else value
            for name, value in code.env.items()
        }
        isolate.on_log(lambda record: self._emit(worker_id, code.version, record))
        try:
            await isolate.load(code.bundle(env))
        except BaseException:
            with anyio.CancelScope(shield=True):
                await isolate.close()
            raise
        return isolate

    def _emit(self, worker_id: str, version: str, record: LogRecord) -> None:
        enriched = {**record, "tenant": worker_id, "version": version}
        for sink in list(self._sinks):
            with contextlib.suppress(Exception):
                sink(enriched)

    async def _discard(self, slot: _Slot) -> None:
        if self._slots.get(slot.key) is slot:
            del self._slots[slot.key]
        await self._close_slot(slot)

    async def _close_slot(self, slot: _Slot) -> None:
        if slot.isolate is not None:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await slot.isolate.close()

    async def _evict_over_cap(self) -> None:
        """LRU: close the least recently used idle isolates beyond ``max_isolates``."""
        excess = len(self._slots) - self.max_isolates
        for slot in list(self._slots.values()):
            if excess <= 0:
                break
            if slot.in_flight == 0 and slot.isolate is not None:
                await self._discard(slot)
                excess -= 1

    async def _reaper(self) -> None:
        while True:
            await anyio.sleep(min(5.0, max(self.idle_timeout / 4, 0.05)))
            now = time.monotonic()
            for slot in list(self._slots.values()):
                expired = now - slot.last_used > self.idle_timeout
                dead = slot.isolate is not None and not slot.isolate.alive
                stale = not self._current(slot.key)  # its tenant was redeployed
                if slot.isolate is not None and slot.in_flight == 0 and (expired or dead or stale):
                    await self._discard(slot)


class WorkerStub:
    """One tenant's current deployment; isolates start on first use."""

    def __init__(
        self, loader: WorkerLoader, worker_id: str, factory: CodeFactory, generation: int
    ) -> None:
        self._loader = loader
        self.id = worker_id
        self.generation = generation
        self._factory = factory
        self._code: WorkerCode | None = None
        self._lock = anyio.Lock()

    async def code(self) -> WorkerCode:
        """The current code (the factory runs once, on first need)."""
        if self._code is None:
            async with self._lock:
                if self._code is None:
                    produced = self._factory()
                    if inspect.isawaitable(produced):
                        produced = await produced
                    if not isinstance(produced, WorkerCode):
                        raise TypeError("a WorkerLoader factory must return WorkerCode")
                    self._loader.code_store.save(produced)
                    self._code = produced
        return self._code

    @property
    def version(self) -> str | None:
        return None if self._code is None else self._code.version

    def get_entrypoint(self, name: str | None = None) -> EntrypointStub:
        return EntrypointStub(self, name)

    async def code_at(self, version: str | None) -> WorkerCode:
        """The code of ``version`` (S39), or the current code if it is None or current."""
        current = await self.code()
        if version is None or version == current.version:
            return current
        pinned = self._loader.code_store.load(version, template=current)
        if pinned is None:
            raise WorkflowError(
                f"code version {version} of worker {self.id!r} is not in the code store "
                f"({self._loader.code_store.directory}); it cannot be resumed on its version"
            )
        return pinned


class EntrypointStub:
    """A named entrypoint of a tenant: ``run``, ``fetch`` and any other public method."""

    def __init__(self, worker: WorkerStub, name: str | None, version: str | None = None) -> None:
        self._worker = worker
        self.name = name
        self.version = version

    def at_version(self, version: str | None) -> EntrypointStub:
        """The same entrypoint on a pinned code version (the dispatch glue uses it, S39)."""
        return EntrypointStub(self._worker, self.name, version)

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        """Forward ``run(event, step)`` into the tenant's isolate; the step's ops stay here."""
        code = await self._worker.code_at(self.version)
        try:
            async with self._worker._loader._use(self._worker, code) as isolate:
                result = await isolate.run_workflow(
                    self.name or "TenantWorkflow",
                    event,
                    step.ops,
                    step.journal,
                    step_limit=step.step_limit,
                )
        except IsolateLost as lost:
            raise ExecutionInterrupted(lost.error) from None
        step.absorb_hits(tuple(result.hits))
        if result.outcome == "return":
            return decode_value(result.value)
        if result.outcome == "stop":
            raise StopExecution
        raise error_from_dict(dict(result.error or {}))

    async def fetch(self, request: Request) -> Response:
        code = await self._worker.code_at(self.version)
        try:
            async with self._worker._loader._use(self._worker, code) as isolate:
                return await isolate.fetch(self.name, request)
        except IsolateLost as lost:
            raise lost.error from None

    def __getattr__(self, method: str) -> Callable[..., Awaitable[Any]]:
        if method.startswith("_"):
            raise AttributeError(method)

        async def call(*args: Any) -> Any:
            code = await self._worker.code_at(self.version)
            try:
                async with self._worker._loader._use(self._worker, code) as isolate:
                    return await isolate.call(self.name or "default", method, list(args))
            except IsolateLost as lost:
                raise lost.error from None

        return call

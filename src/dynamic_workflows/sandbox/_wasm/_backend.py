"""The ``wasm`` backend: tenant Python in the runner component, one fresh store per call.

One wasmtime ``Engine`` per backend, one compiled runner, one linker whose single host
function (``dynwf:runner/host.call``) serves every run. A run executes in a worker thread
(wasm releases the GIL); its host calls find their run through a thread-local and reach the
asyncio loop through a small hand-off (a Task there, a lock the worker waits on with a
timeout: ``run_coroutine_threadsafe(...).result(timeout)`` at half the cost).

Limits, per store: linear memory through ``set_limits`` (always set); CPU, wall time, a step
attempt's ``timeout`` and cancellation through the epoch: a ticker thread per engine bumps it
every tick (10 ms) and each store's deadline is one tick away, with a deadline callback that
checks the run (time spent in wasm against the CPU budget, afresh per attempt; the wall and
attempt deadlines; a stop request) and either extends by one tick or traps. Why a callback:
compiled code caches its deadline, so a deadline lowered from a host call is not seen until
the old one passes. Host calls themselves wait at most until the wall or attempt deadline.
A trap is classified into
``IsolateLost(IsolateLimitError(limit))`` (``cpu``, ``memory``, ``stack``, ``wall``; any other
death is ``IsolateLost.crash()``) and the store discarded; every store is closed explicitly.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import dataclasses
import inspect
import itertools
import math
import threading
import time
from collections.abc import Awaitable, Mapping
from typing import Any, cast

import anyio
import anyio.to_thread
import orjson
import wasmtime
from wasmtime import _bindings as wasmtime_ffi  # the epoch-deadline callback: no wrapper yet
from wasmtime import component

from ...rpc import ExportTable, Exposure, exposure_of
from ...sdk import (
    IsolateLimitError,
    Journal,
    Request,
    Response,
    StepOps,
    WorkflowError,
    WorkflowEvent,
    WorkflowInternalError,
    WorkflowTimeoutError,
    decode_value,
    encode_value,
    error_from_dict,
    error_to_dict,
)
from .._isolate import BackendName, CodeBundle, IsolateLost, LogSink, RunResult
from .._limits import DEFAULT_LIMITS, IsolateLimits
from ._build import (
    COMPONENTIZE_PY_VERSION,
    ENGINE_FLAGS,
    WASMTIME_VERSION,
    Progress,
    RunnerBuildError,
    cache_dir,
    load_runner,
    new_engine,
)
from ._requests import (
    MAX_DEPTH,
    CapCall,
    DoBegin,
    DoEnd,
    GuestRequest,
    GuestRequestError,
    Sleep,
    WaitForEvent,
    check_depth,
    config_dict,
    outcome_dict,
    parse_request,
)

HOST_INTERFACE = "dynwf:runner/host@0.1.0"
MIN_MEMORY_MB = 15
"""The runner's own linear memory needs 14.3 MiB before any tenant code runs."""
TICK_SECONDS = 0.01
MAX_RESULT = 16 << 20
"""Characters in one ``run`` result from the guest."""
_SHAREABLE = (WorkflowError, ValueError, TypeError, LookupError)

_local = threading.local()
_isolate_ids = itertools.count(1)


class _Abort(Exception):
    """Unwinds a host call that must not be answered (wall time, cancellation); the guest is
    then stopped by a zero epoch deadline."""


@dataclasses.dataclass
class _Output:
    """One stream's captured bytes, capped; complete lines go to the log sink."""

    limit: int
    data: bytearray = dataclasses.field(default_factory=bytearray)
    dropped: int = 0

    def write(self, chunk: bytes) -> None:
        room = max(0, self.limit - len(self.data))
        self.data += chunk[:room]
        self.dropped += max(0, len(chunk) - room)


class _Run:
    """Everything one call into the guest needs on the host side; one per store."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        ops: StepOps | None,
        limits: IsolateLimits,
        exposures: Mapping[type, Exposure],
    ) -> None:
        self.loop = loop
        self.ops = ops
        self.exports = ExportTable()
        self.exposures = exposures
        self.started = time.monotonic()
        self.wall_deadline = self.started + limits.wall_seconds
        self.cpu_budget = limits.cpu_seconds
        """Per call, and afresh for every step attempt (as in the subprocess guest)."""
        self.wasm_seconds = 0.0
        """Time in wasm outside attempts, or in the current attempt while one runs."""
        self.attempt_running = False
        self.outside_seconds = 0.0
        self.attempt_timeout: float | None = None
        self.attempt_deadline: float | None = None
        """When the running attempt's ``timeout`` ends (S17: the call is killed then)."""
        self.resumed = self.started
        self.stopped: str | None = None
        """Why the host stopped the guest: ``"wall"``, ``"timeout"`` or ``"cancelled"``."""
        self.pending: _HostCall | None = None
        """The host call the guest waits on, cancelled when the caller goes away."""
        self.violations: list[str] = []
        self.host_calls = 0
        self.stdout = _Output(limits.max_log_bytes)
        self.stderr = _Output(limits.max_log_bytes)

    def hard_deadline(self) -> tuple[float, str]:
        """The earliest of the call's wall deadline and the running attempt's timeout."""
        if self.attempt_deadline is not None and self.attempt_deadline < self.wall_deadline:
            return self.attempt_deadline, "timeout"
        return self.wall_deadline, "wall"

    def deadline_ticks(self) -> int:
        now = time.monotonic()
        left = min(self.cpu_budget - self.wasm_seconds, self.hard_deadline()[0] - now)
        return max(1, math.ceil(left / TICK_SECONDS))

    def verdict(self) -> str | None:
        """At an epoch tick, in wasm: ``None`` to go on, else why the guest must stop."""
        if self.stopped is not None:
            return self.stopped
        now = time.monotonic()
        deadline, kind = self.hard_deadline()
        if now >= deadline:
            return kind
        if self.wasm_seconds + (now - self.resumed) >= self.cpu_budget:
            return "cpu"
        return None

    # -- values to the guest: JSON, with exposed host objects as {"$cap": n, "props"} --
    def export(self, value: Any) -> Any:
        return orjson.loads(orjson.dumps(value, default=self._default))

    def _default(self, obj: Any) -> Any:
        if isinstance(obj, bytes | bytearray | memoryview):
            return {"$bytes": base64.b64encode(bytes(obj)).decode("ascii")}
        found = exposure_of(obj, self.exposures)
        if found is None:
            raise TypeError(f"{type(obj).__name__} cannot be handed to a wasm isolate")
        target, exposure = found
        cap_id = self.exports.export(obj, target, exposure)
        props = {name: getattr(target, name) for name in exposure.props}
        return {"$cap": cap_id, "props": props}


def _lost(reason: str, error: WorkflowError | None = None) -> IsolateLost:
    """The call died: ``error`` is what the attempts in flight fail with (a limit, or the
    S8 crash error); ``reason`` is kept as a note for whoever reads the traceback."""
    lost = IsolateLost(error) if error is not None else IsolateLost.crash()
    lost.add_note(f"wasm: {reason}")
    return lost


def _on_epoch(_context: Any, _data: Any, delta: Any, kind: Any) -> int:
    """The deadline callback: one more tick, or a trap whose reason the run records."""
    run: _Run | None = getattr(_local, "run", None)
    reason = None if run is None else run.verdict()
    if run is None or reason is None:
        delta[0] = 1
        kind[0] = 0  # WASMTIME_UPDATE_DEADLINE_CONTINUE
        return 0
    run.stopped = reason
    error = wasmtime_ffi.wasmtime_error_new(f"dynwf: stopped ({reason})".encode())
    return ctypes.cast(error, ctypes.c_void_p).value or 0


_SET_CALLBACK = getattr(wasmtime_ffi, "_wasmtime_store_epoch_deadline_callback", None)
_EPOCH_CALLBACK = None if _SET_CALLBACK is None else _SET_CALLBACK.argtypes[1](_on_epoch)
_NO_FINALIZER = None if _SET_CALLBACK is None else _SET_CALLBACK.argtypes[3](lambda _data: None)


def _arm(store: wasmtime.Store, run: _Run) -> None:
    """A deadline one tick away, checked by :func:`_on_epoch`; without the callback (another
    wasmtime), the plain deadline of the run's whole budget."""
    if _SET_CALLBACK is not None:
        _SET_CALLBACK(store.ptr(), _EPOCH_CALLBACK, None, _NO_FINALIZER)
        store.set_epoch_deadline(1)
    else:
        store.set_epoch_deadline(run.deadline_ticks())


class WasmBackend:
    """The ``wasm`` isolate backend; one engine, one compiled runner, many isolates.

    ``max_threads``: calls running at once (each holds a worker thread, also while it waits
    on a host call); ``exposures``: extra types whose methods env bindings may expose, as in
    ``rpc``; ``progress``: receives the build's progress lines (``dynwf wasm build``).
    """

    name: BackendName = "wasm"

    def __init__(
        self,
        *,
        max_threads: int = 16,
        exposures: Mapping[type, Exposure] | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.engine = new_engine()
        self.exposures: Mapping[type, Exposure] = dict(exposures or {})
        self._progress = progress
        self._limiter = anyio.CapacityLimiter(max_threads)
        self._component: component.Component | None = None
        self._linker: component.Linker | None = None
        self._build_error: BaseException | None = None
        self._built = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._isolates: set[WasmIsolate] = set()
        self._probe: dict[str, bool] | None = None
        self._probe_lock = anyio.Lock()
        self.closed = False

    # -- life cycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Start the epoch ticker and the background build/load of the runner; idempotent."""
        if self._threads:
            return
        for target, name in ((self._tick, "dynwf-wasm-ticker"), (self._load, "dynwf-wasm-build")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _tick(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            self.engine.increment_epoch()

    def _load(self) -> None:
        try:
            self._component = load_runner(self.engine, self._progress)
            linker = component.Linker(self.engine)
            linker.add_wasip2()
            with linker.root() as root, root.add_instance(HOST_INTERFACE) as host:
                host.add_func("call", _host_call)
            self._linker = linker
        except BaseException as error:
            self._build_error = error
        finally:
            self._built.set()

    async def ready(self) -> None:
        """Wait for the runner and its confinement probe; a failed build (or probe) is a
        :class:`RunnerBuildError` every time."""
        await self._loaded()
        if self._probe is None:
            async with self._probe_lock:
                if self._probe is None:
                    self._probe = await self._run_probe()
        failed = sorted(name for name, ok in self._probe.items() if ok is not True)
        if failed:
            raise RunnerBuildError(f"the wasm runner is not confined: {', '.join(failed)}")

    async def _loaded(self) -> None:
        self.start()
        while not self._built.is_set():
            await anyio.to_thread.run_sync(self._built.wait, 0.5)
        if self._build_error is not None:
            raise RunnerBuildError(
                f"the wasm runner is not available: {self._build_error}"
            ) from self._build_error

    async def _run_probe(self) -> dict[str, bool]:
        """Check, inside a real instance, that the confinement holds (as the subprocess
        backend probes its mechanisms at start); a failure refuses every isolate."""
        code = orjson.dumps({"main": "probe", "modules": {"probe": _PROBE}}).decode()
        request = {"kind": "call", "entrypoint": "Probe", "method": "check", "args": []}
        limits = IsolateLimits(memory_mb=32, cpu_seconds=10.0, wall_seconds=60.0)
        result = await self.invoke(code, request, limits, None, {}, None, None)
        value = result.get("value") if result.get("outcome") == "return" else None
        if not isinstance(value, dict):
            return {"probe_ran": False}
        return {str(k): v is True for k, v in value.items()}

    async def new_isolate(self, limits: IsolateLimits = DEFAULT_LIMITS) -> WasmIsolate:
        if self.closed:
            raise WorkflowError("the wasm backend is closed")
        await self.ready()
        isolate = WasmIsolate(self, limits)
        self._isolates.add(isolate)
        return isolate

    def confinement_report(self) -> dict[str, Any]:
        """What every wasm isolate gets; the same for all of them."""
        return {
            "backend": "wasm",
            "wasmtime": WASMTIME_VERSION,
            "componentize_py": COMPONENTIZE_PY_VERSION,
            "engine_flags": ENGINE_FLAGS,
            "runner_ready": self._component is not None,
            "runner_error": None if self._build_error is None else str(self._build_error),
            "cache_dir": str(cache_dir()),
            "wasi": {"preopens": 0, "env": 0, "args": 0, "network": "denied", "stdin": "empty"},
            "memory": "store limit (set_limits), at least 15 MiB",
            "cpu": f"epoch deadline, {TICK_SECONDS * 1000:.0f} ms ticks, time in wasm",
            "fresh_store_per_call": True,
            "stdout_stderr": "captured and capped",
            "probe": dict(self._probe or {}),
        }

    async def aclose(self) -> None:
        self.closed = True
        for isolate in list(self._isolates):
            await isolate.close()
        self._stop.set()
        for thread in self._threads:
            if thread.name == "dynwf-wasm-ticker":
                await anyio.to_thread.run_sync(thread.join)

    # -- one call into the guest, in a worker thread ---------------------------------------
    async def invoke(  # noqa: PLR0917
        self,
        code: str,
        request: dict[str, Any],
        limits: IsolateLimits,
        ops: StepOps | None,
        env: Mapping[str, Any],
        sink: LogSink | None,
        instance_id: str | None,
    ) -> dict[str, Any]:
        await self._loaded()
        run = _Run(asyncio.get_running_loop(), ops, limits, self.exposures)
        try:
            request = {**request, "env": run.export(dict(env))}
        except TypeError as error:
            raise WorkflowError(f"env cannot be handed to a wasm isolate: {error}") from None
        payload = orjson.dumps(request).decode()
        memory = max(MIN_MEMORY_MB, limits.memory_mb) << 20
        try:
            # Abandoned on cancellation: the thread learns it at its next host call (the one
            # it waits on is cancelled now) or at its epoch deadline, then closes its store.
            raw = await anyio.to_thread.run_sync(
                self._execute, run, code, payload, memory,
                abandon_on_cancel=True, limiter=self._limiter,
            )  # fmt: skip
        except BaseException:
            run.stopped = run.stopped or "cancelled"
            pending = run.pending
            if pending is not None:
                pending.cancel()  # we are on the loop
            raise
        _deliver_logs(run, sink, instance_id)
        return self._result(run, raw)

    def _execute(self, run: _Run, code: str, request: str, memory: int) -> str | Exception:
        """In the worker thread: a fresh store and instance, one ``run`` call, then close."""
        assert self._component is not None and self._linker is not None
        store = wasmtime.Store(self.engine)
        try:
            wasi = wasmtime.WasiConfig()  # nothing granted: no preopens, env, args, stdin
            wasi.stdout_custom = run.stdout.write
            wasi.stderr_custom = run.stderr.write
            store.set_wasi(wasi)
            store.set_limits(memory_size=memory)
            _arm(store, run)
            _local.run = run
            run.resumed = time.monotonic()
            try:
                instance = self._linker.instantiate(store, self._component)
                entry = instance.get_func(store, "run")
                assert entry is not None
                result = entry(store, code, request)
                entry.post_return(store)
            except (wasmtime.WasmtimeError, _Abort) as error:
                return error  # wasmtime re-raises what the host function raised
            if not isinstance(result, str):
                return WorkflowInternalError("the wasm runner returned no string")
            return result
        finally:
            _local.run = None
            store.close()

    def _result(self, run: _Run, raw: str | Exception) -> dict[str, Any]:
        if isinstance(raw, Exception):
            raise _classify(run, raw)
        if run.stopped is not None:
            raise _classify(run, WorkflowInternalError(run.stopped))
        if len(raw) > MAX_RESULT:
            raise _lost("the wasm guest returned an oversized result")
        try:
            result = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _lost("the wasm guest returned a result that is not JSON") from None
        if not isinstance(result, dict) or result.get("outcome") not in _OUTCOMES:
            raise _lost("the wasm guest returned a malformed result")
        try:
            check_depth(result, MAX_DEPTH + 4)
        except GuestRequestError:
            raise _lost("the wasm guest returned a result nested too deeply") from None
        return result


_OUTCOMES = {"return", "raise", "stop", "limit"}
_PROBE = """
import os, socket, sys

class Probe:
    def __init__(self, ctx, env):
        pass

    async def check(self):
        found = {"env_empty": dict(os.environ) == {}, "argv_empty": not sys.argv}
        found["stdin_empty"] = sys.stdin.read() == ""
        for name, attempt in (("no_files", lambda: os.listdir("/")),
                              ("no_network", lambda: socket.socket().connect(("127.0.0.1", 9)))):
            try:
                attempt()
                found[name] = False
            except OSError as error:
                found[name] = isinstance(error, (FileNotFoundError, PermissionError))
        try:
            found["memory_capped"] = len(bytearray(64 << 20)) < 0
        except MemoryError:
            found["memory_capped"] = True
        return found
"""


def _classify(run: _Run, error: Exception) -> IsolateLost:
    """Every way a call can die maps to one typed error (STYLE: one enum at the boundary)."""
    message = str(error)
    first = message.strip().splitlines()[0][:300] if message.strip() else type(error).__name__
    if run.stopped == "wall":
        return _lost("over the wall-time limit", IsolateLimitError("wall"))
    if run.stopped == "cpu":
        return _lost("over the CPU limit", IsolateLimitError("cpu"))
    if run.stopped == "timeout":
        return _lost("a step attempt ran past its timeout", _timeout_error(run))
    if run.stopped == "cancelled":
        return _lost("the call was cancelled")
    if "interrupt" in message:
        deadline, kind = run.hard_deadline()
        if time.monotonic() < deadline - TICK_SECONDS:
            return _lost(f"epoch deadline: {first}", IsolateLimitError("cpu"))
        if kind == "timeout":
            return _lost("a step attempt ran past its timeout", _timeout_error(run))
        return _lost(f"epoch deadline: {first}", IsolateLimitError("wall"))
    if "all fuel consumed" in message:
        return _lost(first, IsolateLimitError("cpu"))
    if "call stack exhausted" in message:
        return _lost(first, IsolateLimitError("stack"))
    if "memory" in message and ("limit" in message or "grow" in message):
        return _lost(first, IsolateLimitError("memory"))
    return _lost(f"the guest trapped: {first}")


def _timeout_error(run: _Run) -> WorkflowTimeoutError:
    milliseconds = round((run.attempt_timeout or 0.0) * 1000)
    return WorkflowTimeoutError(f"Execution timed out after {milliseconds}ms")


def _deliver_logs(run: _Run, sink: LogSink | None, instance_id: str | None) -> None:
    """The call's output, then one ``log`` line per refused host call (at most 10)."""
    if sink is None:
        return
    now = time.time()
    records = []
    for stream, output in (("stdout", run.stdout), ("stderr", run.stderr)):
        text = output.data.decode("utf-8", "replace")
        records += [(stream, line) for line in text.splitlines()]
        if output.dropped:
            note = f"[{output.dropped} bytes of {stream} dropped: over the isolate's log limit]"
            records.append(("stderr", note))
    for reason in run.violations[:10]:
        records.append(("log", f"wasm: refused a host call from the guest: {reason[:500]}"))
    if len(run.violations) > 10:
        records.append(("log", f"wasm: {len(run.violations) - 10} more host calls refused"))
    for stream, line in records:
        with contextlib.suppress(Exception):
            sink({"stream": stream, "line": line, "instance_id": instance_id, "ts": now})


# -- the host function ---------------------------------------------------------------------
def _host_call(store: Any, raw: str) -> str:
    """``host.call`` for every run: validate, hand to the loop, wait, re-arm the deadline."""
    run: _Run | None = getattr(_local, "run", None)
    if run is None:  # cannot happen: every store is created with its run
        raise _Abort("host call outside a run")
    entered = time.monotonic()
    run.wasm_seconds += entered - run.resumed
    run.host_calls += 1
    text = ""
    if run.stopped is None:
        try:
            request = parse_request(raw)
            reply, text = cast(tuple[Any, str], _wait(run, _answer(run, request)))
            if isinstance(request, DoBegin | DoEnd):
                _track_attempt(run, reply)
        except _Abort:
            pass  # run.stopped says why
        except BaseException as error:
            if isinstance(error, GuestRequestError):
                run.violations.append(error.reason)
            text = _error_text(error)
    now = time.monotonic()
    deadline, kind = run.hard_deadline()
    if run.stopped is None and now >= deadline:
        run.stopped = kind
    if run.stopped is not None:
        # The epoch callback stops the guest at the next tick. Not by raising through
        # wasmtime: its last-exception slot is process-wide (concurrent runs could trade).
        stopped: WorkflowError = WorkflowInternalError("the call was stopped")
        if run.stopped == "wall":
            stopped = IsolateLimitError("wall")
        elif run.stopped == "timeout":
            stopped = _timeout_error(run)
        return _error_text(stopped)
    run.resumed = now
    if _SET_CALLBACK is None:
        wasmtime.Store.set_epoch_deadline(store, run.deadline_ticks())
    return text


class _HostCall:
    """One host call handed to the loop: a Task there, a lock the worker thread waits on.

    Lighter than ``run_coroutine_threadsafe`` (no chained concurrent future, no extra loop
    iteration for a done callback): about half the hand-off cost per step op.
    """

    __slots__ = ("cancelled", "done", "error", "result", "task", "work")

    def __init__(self, work: Awaitable[Any]) -> None:
        self.work = work
        self.done = threading.Lock()
        self.done.acquire()
        self.task: asyncio.Task[None] | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.cancelled = False

    def start(self) -> None:
        """On the loop."""
        if not self.cancelled:
            self.task = asyncio.get_running_loop().create_task(self._serve())

    async def _serve(self) -> None:
        try:
            self.result = await self.work
        except BaseException as error:
            self.error = error
        finally:
            self.done.release()

    def cancel(self) -> None:
        """On the loop."""
        if self.task is not None:
            self.task.cancel()
        elif not self.cancelled:
            self.cancelled = True
            if inspect.iscoroutine(self.work):
                self.work.close()
            self.error = asyncio.CancelledError()
            self.done.release()


def _track_attempt(run: _Run, decision: Any) -> None:
    """A fresh CPU budget for each attempt; back to the run's own budget after it."""
    if isinstance(decision, dict) and decision.get("action") == "attempt":
        if not run.attempt_running:
            run.outside_seconds = run.wasm_seconds  # the run's own time so far
        run.attempt_running = True
        run.wasm_seconds = 0.0
        timeout = decision.get("timeout")
        seconds = float(timeout) if isinstance(timeout, int | float) else math.inf
        bounded = 0 < seconds < math.inf
        run.attempt_timeout = seconds if bounded else None
        run.attempt_deadline = time.monotonic() + seconds if bounded else None
    elif run.attempt_running:
        run.attempt_running = False
        run.wasm_seconds = run.outside_seconds
        run.attempt_timeout = run.attempt_deadline = None


def _wait(run: _Run, work: Awaitable[Any]) -> Any:
    call = _HostCall(work)
    run.pending = call
    try:
        run.loop.call_soon_threadsafe(call.start)
    except RuntimeError:  # the loop is closed: the host is going away
        run.stopped = run.stopped or "cancelled"
        raise _Abort("cancelled") from None
    try:
        if run.stopped is not None:
            run.loop.call_soon_threadsafe(call.cancel)
        deadline, kind = run.hard_deadline()
        if not call.done.acquire(timeout=max(0.0, deadline - time.monotonic())):
            run.stopped = run.stopped or kind
            run.loop.call_soon_threadsafe(call.cancel)
            raise _Abort(run.stopped)
    finally:
        run.pending = None
    if isinstance(call.error, asyncio.CancelledError):
        run.stopped = run.stopped or "cancelled"
        raise _Abort(run.stopped)
    if call.error is not None:
        raise call.error
    return call.result


def _error_text(error: BaseException) -> str:
    """An error as the guest sees it; host internals stay on the host (as in ``rpc``)."""
    if isinstance(error, _SHAREABLE):
        shared = error_to_dict(error)
    else:
        shared = {"name": "WorkflowInternalError", "message": "internal error on the host"}
    return orjson.dumps({"error": shared}).decode()


async def _answer(run: _Run, request: GuestRequest) -> tuple[Any, str]:
    """On the loop: serve one request and encode the reply there (capability props are
    read from host objects on the loop's thread, never from the worker's)."""
    try:
        reply = await _serve(run, request)
    except Exception as error:
        return None, _error_text(error)
    try:
        return reply, orjson.dumps(reply, default=run._default).decode()
    except TypeError as error:
        return None, _error_text(WorkflowInternalError(f"not a JSON value: {error}"))


async def _serve(run: _Run, request: GuestRequest) -> Any:
    """One validated request, on the loop."""
    if isinstance(request, CapCall):
        fn = run.exports.resolve(request.cap, request.method)
        result = fn(*decode_value(request.args), **decode_value(request.kwargs))
        if inspect.isawaitable(result):
            result = await result
        return {"value": result}
    ops = run.ops
    if ops is None:
        raise GuestRequestError(f"{type(request).__name__} outside a workflow run")
    if isinstance(request, DoBegin):
        return await ops.do_begin(request.name, request.count, config_dict(request.config))
    if isinstance(request, DoEnd):
        outcome: Any = outcome_dict(request.outcome)
        return await ops.do_end(request.name, request.count, request.attempt, outcome)
    if isinstance(request, Sleep):
        return await ops.sleep(request.name, request.count, request.seconds, request.until)
    if isinstance(request, WaitForEvent):
        return await ops.wait_for_event(request.name, request.count, request.type, request.timeout)
    raise GuestRequestError("unknown op")


class WasmIsolate:
    """One tenant code version in the wasm backend. It holds only the sources: each call
    gets a fresh store and instance, so no state survives between runs or tenants."""

    backend: BackendName = "wasm"

    def __init__(self, owner: WasmBackend, limits: IsolateLimits) -> None:
        self.id = f"wasm-{next(_isolate_ids)}"
        self._owner = owner
        self.limits = limits
        self._code: str | None = None
        self._env: Mapping[str, Any] = {}
        self._sink: LogSink | None = None
        self._closed = False
        self.confinement: Mapping[str, Any] = owner.confinement_report()

    async def load(self, code: CodeBundle) -> None:
        if code.pickled_entrypoints:
            raise WorkflowError(
                "the wasm backend runs source code only: pickled entrypoints need the "
                "in-process or subprocess backend"
            )
        sources: dict[str, Any] = {"main": code.main_module, "modules": dict(code.modules)}
        self._code = orjson.dumps(sources).decode()
        self._env = dict(code.env)
        self.limits = code.limits
        self.confinement = self._owner.confinement_report()
        try:  # import the modules once now, so a broken bundle fails here, not in a run
            loaded = await self._invoke({"kind": "load"}, None, None)
            _raise_unless_returned(loaded)
        except BaseException:
            self._code = None
            raise
        compiled = _compiled_of(loaded.get("value"), sources["modules"])
        if compiled:
            self._code = orjson.dumps({**sources, "compiled": compiled}).decode()

    def _loaded(self) -> str:
        if self._closed:
            raise _lost("the isolate is closed")
        if self._code is None:
            raise WorkflowError("no code loaded into this wasm isolate")
        return self._code

    async def _invoke(
        self, request: dict[str, Any], ops: StepOps | None, instance_id: str | None
    ) -> dict[str, Any]:
        code = self._loaded()
        return await self._owner.invoke(
            code, request, self.limits, ops, self._env, self._sink, instance_id
        )

    async def run_workflow(
        self,
        entrypoint: str,
        event: WorkflowEvent,
        ops: StepOps,
        journal: Journal,
        *,
        step_limit: int,
    ) -> RunResult:
        request = {
            "kind": "workflow",
            "entrypoint": entrypoint,
            "event": event.to_wire(),
            "journal": journal,
            "step_limit": step_limit,
        }
        result = await self._invoke(request, ops, event.instance_id)
        hits = result.get("hits") or []
        if not isinstance(hits, list) or not all(isinstance(h, str) for h in hits):
            raise _lost("the wasm guest reported malformed hits")
        outcome = result["outcome"]
        if outcome == "limit":  # MemoryError escaped run: the instance fails with it
            error = IsolateLimitError("memory").to_dict()
            return RunResult("raise", error=error, hits=tuple(hits))
        if outcome == "return":
            return RunResult("return", value=result.get("value"), hits=tuple(hits))
        if outcome == "stop":
            return RunResult("stop", hits=tuple(hits))
        return RunResult("raise", error=_error_of(result), hits=tuple(hits))

    async def fetch(self, entrypoint: str | None, request: Request) -> Response:
        wire = {"kind": "fetch", "entrypoint": entrypoint, "request": request.to_wire()}
        result = await self._invoke(wire, None, None)
        _raise_unless_returned(result)
        value = result.get("value")
        if not isinstance(value, dict):
            raise _lost("the wasm guest returned a malformed response")
        try:
            return Response.from_wire(value)
        except (ValueError, TypeError) as error:
            raise _lost(f"the wasm guest returned a malformed response: {error}") from None

    async def call(self, entrypoint: str, method: str, args: list[Any]) -> Any:
        wire: dict[str, Any] = {"kind": "call", "entrypoint": entrypoint, "method": method}
        wire["args"] = [encode_value(a) for a in args]
        result = await self._invoke(wire, None, None)
        _raise_unless_returned(result)
        return decode_value(result.get("value"))

    def on_log(self, sink: LogSink) -> None:
        self._sink = sink

    @property
    def alive(self) -> bool:
        return not self._closed and not self._owner.closed

    async def close(self) -> None:
        self._closed = True
        self._code = None
        self._owner._isolates.discard(self)


def _compiled_of(value: Any, modules: Mapping[str, str]) -> dict[str, str]:
    """The guest's compiled modules, kept opaque: the host only stores them and hands them
    back to this isolate's own runs (never interprets them). Anything odd: compile per run."""
    compiled = value.get("compiled") if isinstance(value, dict) else None
    if not isinstance(compiled, dict) or len(compiled) > len(modules):
        return {}
    budget = 8 * sum(len(source) for source in modules.values()) + (1 << 20)
    total = 0
    for name, data in compiled.items():
        if not isinstance(name, str) or not isinstance(data, str):
            return {}
        total += len(name) + len(data)
    return compiled if total <= budget else {}


def _raise_unless_returned(result: dict[str, Any]) -> None:
    if result["outcome"] == "limit":
        raise IsolateLimitError("memory")
    if result["outcome"] != "return":
        raise error_from_dict(_error_of(result))


def _error_of(result: dict[str, Any]) -> dict[str, str]:
    error = result.get("error")
    if not isinstance(error, dict):
        return {"name": "WorkflowInternalError", "message": "the wasm guest raised no error"}
    return {
        "name": str(error.get("name") or "Error")[:256],
        "message": str(error.get("message") or "")[: 64 * 1024],
    }


async def open_wasm_backend(**options: Any) -> WasmBackend:
    """Create and start a backend: the runner loads (or builds) in the background."""
    backend = WasmBackend(**options)
    backend.start()
    return backend

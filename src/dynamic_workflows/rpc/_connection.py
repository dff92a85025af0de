"""One side of a channel: frames in and out, calls multiplexed by id, capability tables.

The connection is symmetric: the host and the guest each export a root object (id 0) and
call the other's. It is an ``asyncio.Protocol`` rather than a stream pair: frames are cut
and dispatched straight from ``data_received`` (half the latency of asyncio streams, see
ISOLATION.md §3c). It runs on the asyncio loop it was opened on (anyio's asyncio backend on
the host). Any defect in an incoming frame closes this connection and nothing else.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import inspect
import socket
import threading
import weakref
from collections.abc import Callable
from typing import Any

from ..sdk import (
    IsolateLimitError,
    WorkflowError,
    WorkflowInternalError,
    error_from_dict,
    error_to_dict,
)
from ._caps import ExportTable, Exposures, exposure_of, props_of
from ._errors import CapabilityError, ChannelClosedError, FrameTooLargeError, ProtocolError
from ._frames import (
    HEADER,
    MAX_DEPTH,
    MAX_FRAME,
    Call,
    Cancel,
    Error,
    Log,
    Release,
    Result,
    decode_frame,
    encode_frame,
    plain_default,
)

ROOT = 0
LIMITS = ("memory", "cpu", "wall", "stack")
MAX_ERROR_MESSAGE = 16 * 1024
_SHAREABLE = (WorkflowError, ValueError, TypeError, LookupError)

LogHandler = Callable[[Log], None]


class RemoteObject:
    """A capability of the peer: attribute access gives async methods, or static props."""

    __slots__ = ("__weakref__", "_rpc_cap", "_rpc_conn", "_rpc_props")

    def __init__(self, conn: Connection, cap: int, props: dict[str, Any]) -> None:
        object.__setattr__(self, "_rpc_conn", conn)
        object.__setattr__(self, "_rpc_cap", cap)
        object.__setattr__(self, "_rpc_props", props)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        props: dict[str, Any] = object.__getattribute__(self, "_rpc_props")
        if name in props:
            return props[name]
        return RemoteMethod(self._rpc_conn, self._rpc_cap, name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("remote objects are read-only")

    def __repr__(self) -> str:
        return f"<remote capability {self._rpc_cap}>"


class RemoteMethod:
    __slots__ = ("_cap", "_conn", "_name")

    def __init__(self, conn: Connection, cap: int, name: str) -> None:
        self._conn = conn
        self._cap = cap
        self._name = name

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return await self._conn.call(self._cap, self._name, args, kwargs)

    def __repr__(self) -> str:
        return f"<remote method {self._name} of capability {self._cap}>"


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _rebuild(frame: Error) -> WorkflowError:
    """The peer's error as an exception: ours by name (the rpc layer's own included),
    anything else a ``RemoteError`` keeping the name."""
    if frame.name == "CapabilityError":
        return CapabilityError(frame.message)
    return error_from_dict({"name": frame.name, "message": frame.message}, limit=frame.limit)


class Connection(asyncio.Protocol):
    """Both directions of one channel.

    ``root`` is what the peer reaches as capability 0. ``accept_caps``: whether the peer may
    hand us capabilities (the guest accepts the host's; the host never accepts the guest's,
    a frame that tries is a protocol violation). ``max_frame`` bounds what we accept,
    ``max_send`` (default: the same) what we send: the host accepts small frames from the
    guest but may send it large ones (a long run's journal). ``share_errors``: send any
    exception's name and message (the guest: tenant errors belong to the tenant); when False only
    ``WorkflowError``/``ValueError``/``TypeError``/``LookupError`` cross and anything else
    becomes a bare ``WorkflowInternalError`` (the host must not leak its internals).
    """

    def __init__(
        self,
        *,
        root: object | None = None,
        exposures: Exposures | None = None,
        accept_caps: bool = False,
        share_errors: bool = False,
        max_frame: int = MAX_FRAME,
        max_send: int | None = None,
        max_depth: int = MAX_DEPTH,
        max_inflight: int = 1024,
        on_log: LogHandler | None = None,
    ) -> None:
        self.max_frame = max_frame
        self.max_send = max_send if max_send is not None else max_frame
        self.max_depth = max_depth
        self.max_inflight = max_inflight
        self._exposures: Exposures = dict(exposures or {})
        self._accept_caps = accept_caps
        self._share_errors = share_errors
        self._on_log = on_log
        self._exports = ExportTable()
        if root is not None:
            found = exposure_of(root, self._exposures)
            if found is None:
                raise TypeError("the root object must be a Capability or exposed")
            self._exports.pin(ROOT, root, found[1], found[0])
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._handling: dict[int, asyncio.Task[None]] = {}
        # calls past max_inflight wait here while reading is paused (backpressure: a peer
        # that floods us stalls, it is not refused)
        self._backlog: collections.deque[Call] = collections.deque()
        self._reading_paused = False
        self._imports: dict[int, weakref.ref[RemoteObject]] = {}
        self._import_counts: dict[int, int] = {}
        self._next_id = 1
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self._closed = asyncio.Event()
        self._close_callbacks: list[Callable[[Connection], None]] = []
        self._frame_caps: list[int] = []
        self._frame_seen: dict[int, dict[str, Any]] = {}
        self.close_reason: str | None = None
        self.violation: ProtocolError | None = None

    # -- opening and closing -------------------------------------------------------------

    @classmethod
    async def open(cls, sock: socket.socket, **options: Any) -> Connection:
        """Wrap a connected AF_UNIX stream socket (it is owned by the connection now)."""
        conn = cls(**options)
        loop = asyncio.get_running_loop()
        sock.setblocking(False)
        await loop.create_unix_connection(lambda: conn, sock=sock)
        return conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()

    def connection_lost(self, exc: Exception | None) -> None:
        self._shutdown(self.close_reason or (f"peer closed: {exc}" if exc else "peer closed"))

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def on_close(self, callback: Callable[[Connection], None]) -> None:
        if self.closed:
            callback(self)
        else:
            self._close_callbacks.append(callback)

    def close(self, reason: str = "closed") -> None:
        """Close the channel; calls in flight fail with :class:`ChannelClosedError`."""
        if self.closed:
            return
        self.close_reason = self.close_reason or reason
        if self._transport is not None:
            self._transport.close()
        self._shutdown(self.close_reason)

    def _violate(self, error: ProtocolError) -> None:
        if self.closed:
            return
        self.violation = error
        self.close_reason = error.message
        if self._transport is not None:
            self._transport.abort()
        self._shutdown(error.message)

    def _shutdown(self, reason: str) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self.close_reason = self.close_reason or reason
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(ChannelClosedError(self.close_reason))
        for task in list(self._handling.values()):
            task.cancel()
        self._exports.clear()
        callbacks, self._close_callbacks = self._close_callbacks, []
        for callback in callbacks:
            callback(self)

    # -- outgoing ------------------------------------------------------------------------

    def _default(self, obj: Any) -> Any:
        if isinstance(obj, RemoteObject):
            raise TypeError("a remote capability cannot be sent back")
        found = exposure_of(obj, self._exposures)
        if found is None:
            return plain_default(obj)
        ref = self._frame_seen.get(id(obj))
        if ref is None:
            target, exposure = found
            cap_id = self._exports.export(obj, target, exposure)
            ref = {"$cap": cap_id, "props": props_of(target, exposure)}
            self._frame_seen[id(obj)] = ref
            self._frame_caps.append(cap_id)
        return ref

    def _encode(self, message: dict[str, Any]) -> bytes:
        """Encode one message, exporting the capabilities it carries (listed in ``caps``)."""
        self._frame_caps = []
        self._frame_seen = {}
        try:
            data = encode_frame(message, max_frame=self.max_send, default=self._default)
            if self._frame_caps:
                message["caps"] = self._frame_caps
                data = encode_frame(message, max_frame=self.max_send, default=self._default)
        except BaseException:
            for cap_id in self._frame_caps:
                self._exports.release(cap_id, 1)
            raise
        finally:
            self._frame_seen = {}
        return data

    def _write(self, data: bytes) -> None:
        if self._transport is None or self.closed:
            raise ChannelClosedError(self.close_reason or "not connected")
        self._transport.write(data)

    async def call(
        self,
        cap: int,
        method: str,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        """Call ``method`` of the peer's capability ``cap`` and wait for its answer.

        Cancelling the caller sends ``cancel`` to the peer. A remote error is raised rebuilt
        from its ``{"name", "message"}`` (:func:`~dynamic_workflows.sdk.error_from_dict`).
        """
        if self.closed:
            raise ChannelClosedError(self.close_reason or "closed")
        call_id = self._next_id
        self._next_id += 1
        message: dict[str, Any] = {"t": "call", "id": call_id, "cap": cap, "method": method}
        if args:
            message["args"] = list(args)
        if kwargs:
            message["kwargs"] = kwargs
        try:
            data = self._encode(message)
        except TypeError as error:
            raise WorkflowError(f"argument of {method}() is not a JSON value: {error}") from None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        self._write(data)
        try:
            return await future
        except asyncio.CancelledError:
            if self._pending.pop(call_id, None) is not None and not self.closed:
                self._write(self._encode({"t": "cancel", "id": call_id}))
            raise

    def remote(self, cap: int = ROOT) -> RemoteObject:
        """A proxy of the peer's capability ``cap`` (its root by default)."""
        return RemoteObject(self, cap, {})

    def send_log(self, stream: str, line: str, instance_id: str | None, ts: float) -> None:
        """Fire-and-forget; safe from any thread; dropped once closed."""
        message = {"t": "log", "stream": stream, "line": line, "instance_id": instance_id, "ts": ts}
        if self._loop is None or self.closed:
            return
        # Plain encoding: a log carries no capabilities, and this may run on another thread.
        data = encode_frame(message, max_frame=self.max_send)
        if threading.get_ident() == self._thread:
            self._write(data)
        else:
            self._loop.call_soon_threadsafe(self._write_quietly, data)

    def _write_quietly(self, data: bytes) -> None:
        if not self.closed and self._transport is not None:
            self._transport.write(data)

    def revoke(self, obj: Any) -> None:
        """Withdraw a capability handed over earlier (a run's step ops when it ends)."""
        self._exports.revoke(obj)

    # -- incoming ------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        offset = 0
        size = len(buffer)
        try:
            while size - offset >= 4:
                (length,) = HEADER.unpack_from(buffer, offset)
                if length == 0 or length > self.max_frame:
                    raise ProtocolError(f"frame of {length} bytes (maximum {self.max_frame})")
                if size - offset - 4 < length:
                    break
                body = bytes(buffer[offset + 4 : offset + 4 + length])
                offset += 4 + length
                self._dispatch(body)
                if self.closed:
                    return
        except ProtocolError as error:
            self._violate(error)
            return
        if offset:
            del buffer[:offset]

    def eof_received(self) -> bool | None:
        return None

    def _dispatch(self, body: bytes) -> None:
        frame = decode_frame(body, max_depth=self.max_depth)
        if isinstance(frame, Call):
            self._on_call(frame)
        elif isinstance(frame, Result):
            value = self._import(frame.value, frame.caps)
            future = self._pending.pop(frame.id, None)
            if future is not None and not future.done():
                future.set_result(value)
        elif isinstance(frame, Error):
            future = self._pending.pop(frame.id, None)
            if future is not None and not future.done():
                future.set_exception(_rebuild(frame))
        elif isinstance(frame, Cancel):
            task = self._handling.pop(frame.id, None)
            if task is not None:
                task.cancel()
            else:
                self._backlog = collections.deque(c for c in self._backlog if c.id != frame.id)
        elif isinstance(frame, Release):
            self._exports.release(frame.cap, frame.count)
        elif isinstance(frame, Log) and self._on_log is not None:
            self._on_log(frame)

    def _on_call(self, frame: Call) -> None:
        if frame.id in self._handling:
            raise ProtocolError(f"call id {frame.id} reused while in flight")
        if len(self._handling) >= self.max_inflight:
            self._backlog.append(frame)
            if not self._reading_paused and self._transport is not None:
                self._transport.pause_reading()
                self._reading_paused = True
            return
        args = self._import(frame.args, frame.caps)
        kwargs = self._import(frame.kwargs, frame.caps)
        try:
            fn = self._exports.resolve(frame.cap, frame.method)
        except CapabilityError as error:
            self._answer_error(frame.id, error)
            return
        # A fresh context: a handler must not inherit the context variables of whoever
        # opened the connection (an engine's, a run's), only what it sets itself.
        task = asyncio.get_running_loop().create_task(
            self._serve(frame.id, fn, args, kwargs), context=contextvars.Context()
        )
        self._handling[frame.id] = task
        task.add_done_callback(self._call_done)

    def _call_done(self, _task: asyncio.Task[None]) -> None:
        """A call finished: serve waiting calls, then read again once none wait."""
        while self._backlog and len(self._handling) < self.max_inflight and not self.closed:
            self._on_call(self._backlog.popleft())
        if self._reading_paused and not self._backlog and self._transport is not None:
            self._transport.resume_reading()
            self._reading_paused = False

    async def _serve(
        self, call_id: int, fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]
    ) -> None:
        try:
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        except asyncio.CancelledError:
            if self._handling.pop(call_id, None) is not None and not self.closed:
                # Withdrawn on this side (the peer's cancel pops it first): say so, so the
                # peer's caller does not wait forever.
                self._answer_error(call_id, WorkflowError("the call was withdrawn"))
            return
        except (Exception, SystemExit) as error:  # sys.exit() in tenant code is its error
            self._handling.pop(call_id, None)
            self._answer_error(call_id, error)
            return
        if self._handling.pop(call_id, None) is None or self.closed:
            return
        try:
            data = self._encode({"t": "result", "id": call_id, "value": result})
        except FrameTooLargeError as error:
            self._answer_error(call_id, WorkflowInternalError(error.message))
            return
        except TypeError as error:
            message = f"result is not a JSON value: {error}"
            self._answer_error(call_id, WorkflowInternalError(message))
            return
        self._write_quietly(data)

    def _answer_error(self, call_id: int, error: BaseException) -> None:
        if self.closed:
            return
        if self._share_errors or isinstance(error, _SHAREABLE):
            data = error_to_dict(error)
        else:
            data = {"name": "WorkflowInternalError", "message": "internal error on the host"}
        message = {
            "t": "error",
            "id": call_id,
            "name": _truncate(data["name"], 256),
            "message": _truncate(data["message"], MAX_ERROR_MESSAGE),
        }
        limit = getattr(error, "limit", None)
        if isinstance(error, IsolateLimitError) and limit in LIMITS:
            message["limit"] = limit
        self._write_quietly(self._encode(message))

    def _import(self, value: Any, caps: list[int]) -> Any:
        if not caps:
            return value
        if not self._accept_caps:
            raise ProtocolError("the peer may not hand over capabilities")
        wanted = set(caps)
        for cap_id in wanted:
            self._import_counts[cap_id] = self._import_counts.get(cap_id, 0) + 1
        return self._swap(value, wanted)

    def _swap(self, value: Any, wanted: set[int]) -> Any:
        if isinstance(value, list):
            return [self._swap(item, wanted) for item in value]
        if isinstance(value, dict):
            cap_id = value.get("$cap")
            if isinstance(cap_id, int) and cap_id in wanted:
                props = value.get("props")
                return self._proxy(cap_id, props if isinstance(props, dict) else {})
            return {key: self._swap(item, wanted) for key, item in value.items()}
        return value

    def _proxy(self, cap_id: int, props: dict[str, Any]) -> RemoteObject:
        ref = self._imports.get(cap_id)
        proxy = ref() if ref is not None else None
        if proxy is None:
            proxy = RemoteObject(self, cap_id, props)
            self._imports[cap_id] = weakref.ref(proxy)
            weakref.finalize(proxy, self._release_import, cap_id)
        return proxy

    def _release_import(self, cap_id: int) -> None:
        ref = self._imports.get(cap_id)
        if ref is not None and ref() is None:
            del self._imports[cap_id]
        count = self._import_counts.pop(cap_id, 0)
        if count and not self.closed and self._loop is not None:
            # A finalizer may run anywhere (even inside another write): only schedule.
            data = encode_frame({"t": "release", "cap": cap_id, "count": count})
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._loop.call_soon_threadsafe(self._write_quietly, data)

    # -- introspection for tests ---------------------------------------------------------

    @property
    def exported(self) -> int:
        """How many capabilities the peer currently holds (the root included)."""
        return len(self._exports)

    @property
    def in_flight(self) -> int:
        return len(self._pending) + len(self._handling)

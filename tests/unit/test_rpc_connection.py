"""Connections over real socketpairs: multiplexing, cancellation, capabilities, hostile peers."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import pickle
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamic_workflows.rpc import (
    HEADER,
    Capability,
    CapabilityError,
    ChannelClosedError,
    Connection,
    RemoteObject,
    expose,
)
from dynamic_workflows.sdk import (
    IsolateLimitError,
    RemoteError,
    WorkflowError,
    WorkflowInternalError,
)


class Handle(Capability):
    __rpc_methods__ = frozenset({"status"})
    __rpc_props__ = ("id",)

    def __init__(self, id: str) -> None:
        self.id = id

    async def status(self) -> dict[str, str]:
        return {"id": self.id, "status": "running"}


class Service(Capability):
    __rpc_methods__ = frozenset(
        {"echo", "create", "wait", "slow", "boom", "internal", "opaque", "handles", "over"}
    )

    def __init__(self) -> None:
        self.gates: dict[int, asyncio.Event] = {}
        self.cancelled: list[str] = []
        self.started = asyncio.Event()

    async def echo(self, value: Any, *, suffix: str = "") -> Any:
        return [value, suffix] if suffix else value

    def create(self, id: str) -> Handle:
        return Handle(id)

    def handles(self, n: int) -> list[Handle]:
        return [Handle(str(i)) for i in range(n)]

    async def wait(self, key: int) -> int:
        gate = self.gates.setdefault(key, asyncio.Event())
        await gate.wait()
        return key

    async def slow(self, tag: str) -> None:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.append(tag)
            raise

    def boom(self) -> None:
        raise ZeroDivisionError("secret host detail")

    def internal(self) -> None:
        raise WorkflowError("a public message")

    def over(self, limit: str) -> None:
        raise IsolateLimitError(limit)

    def opaque(self) -> object:
        return object()

    def hidden(self) -> str:
        return "must not be reachable"


Pair = tuple[Connection, Connection, Service, Service]


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait for a state; the deadline is only a hang guard."""
    with anyio.fail_after(10):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.001)


async def open_pair(**host_options: Any) -> Pair:
    a, b = socket.socketpair()
    host_service, guest_service = Service(), Service()
    host = await Connection.open(a, root=host_service, **host_options)
    guest = await Connection.open(b, root=guest_service, accept_caps=True, share_errors=True)
    return host, guest, host_service, guest_service


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    host, guest, hs, gs = await open_pair()
    yield host, guest, hs, gs
    host.close()
    guest.close()


async def test_calls_both_ways(pair: Pair) -> None:
    host, guest, _, _ = pair
    assert await guest.remote().echo({"a": [1, 2.5, None, True]}) == {"a": [1, 2.5, None, True]}
    assert await host.remote().echo("x", suffix="y") == ["x", "y"]
    assert await guest.remote().echo(b"\x01") == {"$bytes": "AQ=="}


async def test_many_concurrent_calls_are_multiplexed(pair: Pair) -> None:
    host, guest, hs, _ = pair
    root = guest.remote()
    results: dict[int, int] = {}

    async def one(key: int) -> None:
        results[key] = await root.wait(key)

    async with anyio.create_task_group() as tg:
        for key in range(50):
            tg.start_soon(one, key)
        await eventually(lambda: len(hs.gates) == 50)
        for key in reversed(range(50)):  # answer in the opposite order
            hs.gates[key].set()
    assert results == {key: key for key in range(50)}
    assert host.in_flight == 0
    assert guest.in_flight == 0


@pytest.mark.parametrize("direction", ["guest_to_host", "host_to_guest"])
async def test_cancelling_the_caller_cancels_the_callee(pair: Pair, direction: str) -> None:
    host, guest, hs, gs = pair
    caller, callee = (guest, hs) if direction == "guest_to_host" else (host, gs)
    task = asyncio.ensure_future(caller.remote().slow(direction))
    await callee.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await eventually(lambda: callee.cancelled == [direction])
    assert await caller.remote().echo(1) == 1  # the channel goes on


async def test_returned_capabilities_are_exported_with_props(pair: Pair) -> None:
    host, guest, _, _ = pair
    handle = await guest.remote().create("order-1")
    assert isinstance(handle, RemoteObject)
    assert handle.id == "order-1"  # a prop: no round trip
    assert await handle.status() == {"id": "order-1", "status": "running"}
    many = await guest.remote().handles(3)
    assert [h.id for h in many] == ["0", "1", "2"]
    assert host.exported == 5  # root + 4 handles
    del handle, many
    gc.collect()
    await eventually(lambda: host.exported == 1)


async def test_unknown_revoked_and_hidden_capabilities_fail_only_that_call(pair: Pair) -> None:
    host, guest, _, _ = pair
    with pytest.raises(CapabilityError, match="unknown capability id 99"):
        await guest.call(99, "status")
    handle = await guest.remote().create("h")
    cap_id = handle._rpc_cap
    host.revoke(host_handle_of(host, cap_id))
    with pytest.raises(CapabilityError, match=f"revoked capability id {cap_id}"):
        await handle.status()
    for method in ("hidden", "nothing", "rpc_props"):
        with pytest.raises(WorkflowError):
            await guest.call(0, method)
    assert not host.closed
    assert await guest.remote().echo("still fine") == "still fine"


def host_handle_of(host: Connection, cap_id: int) -> Any:
    entry = host._exports._entries[cap_id]
    return entry.obj


async def test_expose_allow_list() -> None:
    class Plain:
        def allowed(self) -> str:
            return "yes"

        def denied(self) -> str:
            return "no"

    with pytest.raises(ValueError, match="private"):
        expose(Plain(), methods=["_secret"])
    a, b = socket.socketpair()
    host = await Connection.open(a, root=expose(Plain(), methods=["allowed"]))
    guest = await Connection.open(b, accept_caps=True)
    assert await guest.remote().allowed() == "yes"
    with pytest.raises(CapabilityError, match="no method 'denied'"):
        await guest.remote().denied()
    host.close()
    guest.close()


async def test_errors_cross_as_name_and_message(pair: Pair) -> None:
    host, guest, _, _ = pair
    with pytest.raises(WorkflowInternalError) as hidden:
        await guest.remote().boom()  # host side: internals stay on the host
    assert "secret" not in hidden.value.message
    with pytest.raises(WorkflowError, match="a public message"):
        await guest.remote().internal()
    with pytest.raises(RemoteError) as shared:
        await host.remote().boom()  # guest side: the tenant's own error, by name
    assert (shared.value.name, shared.value.message) == ("ZeroDivisionError", "secret host detail")
    with pytest.raises(WorkflowInternalError, match="not a JSON value"):
        await guest.remote().opaque()


@pytest.mark.parametrize("limit", ["cpu", "memory", "wall", "stack"])
async def test_a_limit_error_keeps_its_limit(pair: Pair, limit: str) -> None:
    host, guest, _, _ = pair
    for caller in (host, guest):
        with pytest.raises(IsolateLimitError) as info:
            await caller.remote().over(limit)
        assert info.value.limit == limit


async def test_host_never_accepts_capabilities_from_the_guest(pair: Pair) -> None:
    host, _, _, _ = pair
    with pytest.raises(ChannelClosedError):
        await host.remote().create("forged")  # the guest answers with a capability
    assert host.closed
    assert host.violation is not None
    assert "may not hand over capabilities" in host.violation.message


async def test_closing_fails_calls_in_flight(pair: Pair) -> None:
    host, guest, hs, _ = pair
    task = asyncio.ensure_future(guest.remote().slow("x"))
    await hs.started.wait()
    host.close("test")
    with pytest.raises(ChannelClosedError):
        await task
    with pytest.raises(ChannelClosedError):
        await guest.remote().echo(1)


async def test_calls_past_the_in_flight_limit_wait_their_turn() -> None:
    """Backpressure, not refusal: the host stops reading until a slot frees up, so a busy
    (or flooding) peer stalls instead of getting a terminal error."""
    host, guest, hs, _ = await open_pair(max_inflight=2)
    first = asyncio.ensure_future(guest.remote().wait(1))
    second = asyncio.ensure_future(guest.remote().wait(2))
    await eventually(lambda: len(hs.gates) == 2)
    third = asyncio.ensure_future(guest.remote().echo(3))
    await asyncio.sleep(0.05)
    assert not third.done()  # waiting for a slot, not refused
    hs.gates[1].set()
    assert await third == 3
    hs.gates[2].set()
    assert (await first, await second) == (1, 2)
    host.close()
    guest.close()


# -- a raw, hostile peer ------------------------------------------------------------------


async def raw_peer(**options: Any) -> tuple[Connection, socket.socket]:
    a, b = socket.socketpair()
    conn = await Connection.open(a, root=Service(), **options)
    b.setblocking(False)
    return conn, b


async def send_raw(sock: socket.socket, data: bytes) -> None:
    await asyncio.get_running_loop().sock_sendall(sock, data)


async def read_frame(sock: socket.socket) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    header = b""
    while len(header) < 4:
        header += await loop.sock_recv(sock, 4 - len(header))
    (length,) = HEADER.unpack(header)
    body = b""
    while len(body) < length:
        body += await loop.sock_recv(sock, length - len(body))
    result: dict[str, Any] = orjson.loads(body)
    return result


def framed(message: Any) -> bytes:
    body = message if isinstance(message, bytes) else orjson.dumps(message)
    return HEADER.pack(len(body)) + body


PWNED: list[str] = []


class Payload:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (PWNED.append, ("unpickled!",))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (HEADER.pack(5 << 20), "maximum"),
        (HEADER.pack(0), "maximum"),
        (framed(b"\x00garbage"), "malformed"),
        (framed(pickle.dumps(Payload())), "malformed"),
        (framed({"t": "result", "id": 1, "value": [[[[[[[[[[[[1]]]]]]]]]]]]}), "deeper"),
        (framed({"t": "call", "id": 7, "cap": 0, "method": "echo", "caps": [1]}), "capabilities"),
    ],
)
async def test_hostile_frames_close_that_channel_only(data: bytes, reason: str) -> None:
    bystander_host, bystander_guest, _, _ = await open_pair()
    conn, sock = await raw_peer(max_depth=8)
    await send_raw(sock, data)
    with anyio.fail_after(10):
        await conn.wait_closed()
    assert conn.violation is not None
    assert reason in conn.violation.message
    assert PWNED == []
    assert await bystander_guest.remote().echo("unaffected") == "unaffected"
    bystander_host.close()
    bystander_guest.close()
    sock.close()


async def test_forged_answers_and_unknown_caps_do_not_close_the_channel() -> None:
    conn, sock = await raw_peer()
    # An answer to a call never made, a cancel and a release of nothing: ignored.
    await send_raw(sock, framed({"t": "result", "id": 12345, "value": 1}))
    await send_raw(sock, framed({"t": "error", "id": 12345, "name": "X", "message": "y"}))
    await send_raw(sock, framed({"t": "cancel", "id": 999}))
    await send_raw(sock, framed({"t": "release", "cap": 0, "count": 5}))
    await send_raw(sock, framed({"t": "release", "cap": 77}))
    await send_raw(sock, framed({"t": "call", "id": 1, "cap": 4242, "method": "status"}))
    answer = await read_frame(sock)
    assert answer["t"] == "error"
    assert answer["id"] == 1
    assert answer["name"] == "CapabilityError"
    await send_raw(sock, framed({"t": "call", "id": 2, "cap": 0, "method": "echo", "args": [5]}))
    assert await read_frame(sock) == {"t": "result", "id": 2, "value": 5}
    assert not conn.closed
    conn.close()
    sock.close()


async def test_reusing_a_call_id_in_flight_is_a_violation() -> None:
    conn, sock = await raw_peer()
    call = {"t": "call", "id": 1, "cap": 0, "method": "wait", "args": [1]}
    await send_raw(sock, framed(call) + framed(call))
    with anyio.fail_after(10):
        await conn.wait_closed()
    assert conn.violation is not None
    sock.close()


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False
        self.written: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children)
    ),
    max_leaves=30,
)
raw_chunks = st.one_of(
    st.binary(max_size=64),
    json_values.map(lambda v: framed(orjson.dumps(v))),
    st.fixed_dictionaries(
        {
            "t": st.sampled_from(["call", "result", "error", "cancel", "release", "log"]),
            "id": st.integers(-1, 5),
            "cap": st.integers(-1, 5),
        },
        optional={
            "method": st.sampled_from(["echo", "create", "boom", "_x", "hidden"]),
            "args": st.lists(json_values, max_size=3),
            "value": json_values,
            "caps": st.lists(st.integers(0, 3), max_size=2),
            "name": st.text(max_size=5),
            "message": st.text(max_size=5),
            "count": st.integers(-1, 3),
        },
    ).map(framed),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(raw_chunks, max_size=8))
def test_fuzz_the_connection_never_crashes(chunks: list[bytes]) -> None:
    async def scenario() -> None:
        conn = Connection(root=Service(), max_depth=8)
        transport = _Transport()
        conn.connection_made(transport)
        for chunk in chunks:
            conn.data_received(chunk)  # must not raise
            if conn.closed:
                break
        await asyncio.sleep(0)  # let any started handler run
        conn.close("done")
        assert conn.closed
        assert transport.closed

    asyncio.run(scenario())


MARK: contextvars.ContextVar[str] = contextvars.ContextVar("mark", default="clean")


class Peek(Capability):
    __rpc_methods__ = frozenset({"peek"})

    def peek(self) -> str:
        return MARK.get()


async def test_handlers_do_not_inherit_the_openers_context() -> None:
    a, b = socket.socketpair()
    token = MARK.set("the opener's")
    try:
        host = await Connection.open(a, root=Peek())
    finally:
        MARK.reset(token)
    guest = await Connection.open(b, accept_caps=True)
    assert await guest.remote().peek() == "clean"
    host.close()
    guest.close()

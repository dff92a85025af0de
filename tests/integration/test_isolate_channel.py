"""A hostile guest at the other end of a ``ChannelIsolate``: a raw socket the test drives
frame by frame (forged, oversized and deep frames, unknown and revoked capability ids,
pickles, capabilities it may not hand over). Only that isolate's channel closes."""

from __future__ import annotations

import asyncio
import pickle
import socket
from collections.abc import AsyncIterator
from typing import Any

import anyio
import orjson
import pytest

from dynamic_workflows.rpc import HEADER
from dynamic_workflows.sandbox import (
    ChannelIsolate,
    IsolateBackend,
    IsolateLimits,
    IsolateLost,
    open_backend,
)
from dynamic_workflows.sdk import WorkflowInternalError

from .test_isolate_behaviour import ScriptedOps, bundle, event


class FakeGuest:
    """The guest end of the channel, written by hand."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.loop = asyncio.get_running_loop()

    async def read(self) -> dict[str, Any]:
        header = await self._exactly(4)
        (length,) = HEADER.unpack(header)
        message: dict[str, Any] = orjson.loads(await self._exactly(length))
        return message

    async def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = await self.loop.sock_recv(self.sock, n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    async def send(self, message: Any) -> None:
        body = message if isinstance(message, bytes) else orjson.dumps(message)
        await self.loop.sock_sendall(self.sock, HEADER.pack(len(body)) + body)

    async def send_raw(self, data: bytes) -> None:
        await self.loop.sock_sendall(self.sock, data)

    async def call(self, cap: int, method: str, *args: Any, id: int = 1) -> dict[str, Any]:
        await self.send({"t": "call", "id": id, "cap": cap, "method": method, "args": list(args)})
        return await self.read()

    async def closed(self) -> bool:
        try:
            with anyio.fail_after(10):
                while await self.loop.sock_recv(self.sock, 65536):
                    pass
        except (ConnectionResetError, BrokenPipeError):
            pass
        return True


_OPEN: list[socket.socket] = []


@pytest.fixture(autouse=True)
def close_fake_guests() -> Any:
    yield
    while _OPEN:
        _OPEN.pop().close()


async def connect_fake(limits: IsolateLimits | None = None) -> tuple[ChannelIsolate, FakeGuest]:
    host, guest = socket.socketpair()
    _OPEN.append(guest)
    fake = FakeGuest(guest)
    connecting = asyncio.ensure_future(
        ChannelIsolate.connect(host, limits or IsolateLimits(), backend="inprocess")
    )
    hello = await fake.read()
    assert (hello["t"], hello["cap"], hello["method"]) == ("call", 0, "hello")
    await fake.send({"t": "result", "id": hello["id"], "value": {"pid": 0}})
    return await connecting, fake


class Run:
    """A ``run_workflow`` in flight against the fake guest."""

    def __init__(self, isolate: ChannelIsolate, ops: ScriptedOps) -> None:
        self.task = asyncio.ensure_future(
            isolate.run_workflow("W", event("run-1"), ops, {}, step_limit=10)
        )

    async def received(self, fake: FakeGuest) -> tuple[int, int]:
        call = await fake.read()
        assert call["method"] == "run_workflow"
        ops_ref = call["args"][2]
        assert set(ops_ref) == {"$cap", "props"}
        assert call["caps"] == [ops_ref["$cap"]]
        return call["id"], ops_ref["$cap"]


@pytest.fixture
async def bystander() -> AsyncIterator[IsolateBackend]:
    backend = await open_backend("inprocess")
    try:
        yield backend
    finally:
        await backend.aclose()


async def test_ops_are_validated_and_revoked_after_the_run() -> None:
    isolate, fake = await connect_fake()
    records: list[dict[str, Any]] = []
    isolate.on_log(records.append)
    ops = ScriptedOps()
    run = Run(isolate, ops)
    run_id, ops_cap = await run.received(fake)

    bad = await fake.call(ops_cap, "do_begin", 1, "two", None, id=1)
    assert bad["t"] == "error"
    assert "invalid do_begin arguments" in bad["message"]
    hidden = await fake.call(ops_cap, "calls", id=2)
    assert (hidden["t"], hidden["name"]) == ("error", "CapabilityError")
    unknown = await fake.call(987, "do_begin", "a", 1, {}, id=3)
    assert (unknown["t"], unknown["name"]) == ("error", "CapabilityError")
    assert "unknown capability id 987" in unknown["message"]
    good = await fake.call(ops_cap, "do_begin", "a", 1, {}, id=4)
    assert good == {
        "t": "result",
        "id": 4,
        "value": {"action": "attempt", "attempt": 1, "config": {}},
    }
    forged_outcome = await fake.call(ops_cap, "do_end", "a", 1, 1, {"value": 1, "admin": 1}, id=5)
    assert "invalid step outcome" in forged_outcome["message"]
    assert ops.calls == [("do_begin", "a", 1)]  # nothing invalid reached the host's ops

    await fake.send({"t": "log", "stream": "stdout", "line": "mine", "instance_id": "run-1"})
    await fake.send({"t": "log", "stream": "stdout", "line": "forged", "instance_id": "other"})
    await fake.send({"t": "result", "id": run_id, "value": {"outcome": "return", "value": 1}})
    result = await run.task
    assert (result.outcome, result.value, result.hits) == ("return", 1, ())

    revoked = await fake.call(ops_cap, "do_begin", "a", 2, {}, id=6)
    assert (revoked["t"], revoked["name"]) == ("error", "CapabilityError")
    assert f"revoked capability id {ops_cap}" in revoked["message"]
    assert [(r["line"], r["instance_id"]) for r in records] == [("mine", "run-1"), ("forged", None)]
    assert isolate.alive
    await isolate.close()


PWNED: list[str] = []


class Payload:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (PWNED.append, ("unpickled on the host!",))


def framed(message: Any) -> bytes:
    body = message if isinstance(message, bytes) else orjson.dumps(message)
    return HEADER.pack(len(body)) + body


def deep(n: int) -> Any:
    value: Any = 0
    for _ in range(n):
        value = {"a": value}
    return value


HOSTILE = {
    "oversized": HEADER.pack(64 << 20) + b"{",
    "empty": HEADER.pack(0),
    "garbage": framed(b"\xff\xfe not json"),
    "pickle": framed(pickle.dumps(Payload())),
    "deep": framed({"t": "call", "id": 9, "cap": 0, "method": "retire", "args": [deep(200)]}),
    "forged_capability": framed({"t": "result", "id": 1, "value": {"$cap": 1}, "caps": [1]}),
    "unknown_type": framed({"t": "exec", "code": "import os"}),
}


@pytest.mark.parametrize("attack", sorted(HOSTILE))
async def test_hostile_frames_close_only_that_isolate(
    attack: str, bystander: IsolateBackend
) -> None:
    other = await bystander.new_isolate()
    await other.load(bundle())
    isolate, fake = await connect_fake()
    run = Run(isolate, ScriptedOps())
    await run.received(fake)
    await fake.send_raw(HOSTILE[attack])
    with pytest.raises(IsolateLost) as info, anyio.fail_after(30):
        await run.task
    assert isinstance(info.value.error, WorkflowInternalError)
    assert info.value.error.message == "Attempt failed due to internal workflows error"
    assert not isolate.alive
    assert await fake.closed()
    assert PWNED == []
    result = await other.run_workflow("Flaky", event(), ScriptedOps(), {}, step_limit=10)
    assert (result.outcome, result.value) == ("return", 3)


async def test_a_malformed_run_result_loses_the_isolate() -> None:
    isolate, fake = await connect_fake()
    run = Run(isolate, ScriptedOps())
    run_id, _ = await run.received(fake)
    await fake.send({"t": "result", "id": run_id, "value": {"outcome": "pwn", "hits": [1]}})
    with pytest.raises(IsolateLost):
        await run.task
    assert not isolate.alive


async def test_log_floods_are_capped_on_the_host() -> None:
    isolate, fake = await connect_fake(IsolateLimits(max_log_bytes=1000))
    records: list[dict[str, Any]] = []
    isolate.on_log(records.append)
    run = Run(isolate, ScriptedOps())
    run_id, _ = await run.received(fake)
    for i in range(200):
        await fake.send({"t": "log", "stream": "stderr", "line": f"{i:03} " + "x" * 96})
    await fake.send({"t": "result", "id": run_id, "value": {"outcome": "return"}})
    await run.task
    # hello and run_workflow each added max_log_bytes to the budget.
    assert sum(len(r["line"]) + 1 for r in records) <= 2000
    assert 0 < len(records) < 200
    await isolate.close()

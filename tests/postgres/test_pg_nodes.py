"""Store side of several dispatchers on one database (node mode): claims with
``FOR UPDATE SKIP LOCKED``, leases that run out and pass to another node, fencing of a node
that lost an instance, and LISTEN/NOTIFY. The engine does not drive these yet (POSTGRES-2 in
team/engine-findings.md); the single-dispatcher store never looks at leases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import anyio
import psycopg
import pytest

from dynamic_workflows.runtime._postgres import LeaseLostError, PostgresStore
from dynamic_workflows.runtime._store import Ident, InstanceRow, LogEntry, NewEvent, Tx
from dynamic_workflows.sdk import WorkflowInternalError

HOUR = 3600.0


def rows(n: int) -> list[InstanceRow]:
    return [
        InstanceRow(f"u{i}", "WF", "", f"i{i}", {}, None, "queued", created=float(i))
        for i in range(n)
    ]


def ident(uid: str) -> Ident:
    return Ident(uid, "i" + uid[1:], "WF", "")


@pytest.fixture
async def nodes(pg_url: str) -> AsyncIterator[Callable[..., PostgresStore]]:
    opened: list[PostgresStore] = []

    def make(node: str | None, lease: float = HOUR) -> PostgresStore:
        store = PostgresStore(pg_url, durability="os", node=node, lease=lease)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


async def _seed(make: Callable[..., PostgresStore], n: int) -> None:
    plain = make(None)
    await plain.open()
    await plain.create(rows(n), [LogEntry("queued", 0.0)] * n, skip_existing=False)


async def test_two_nodes_never_claim_the_same_instance(
    nodes: Callable[..., PostgresStore],
) -> None:
    await _seed(nodes, 40)
    a, b = nodes("a"), nodes("b")
    await asyncio.gather(a.open(), b.open())
    got_a, got_b = await asyncio.gather(a.claim(25), b.claim(25))
    uids_a, uids_b = {r.uid for r in got_a}, {r.uid for r in got_b}
    assert not uids_a & uids_b
    assert uids_a | uids_b == {f"u{i}" for i in range(40)}
    assert [r.created for r in got_a] == sorted(r.created for r in got_a)  # oldest first
    assert await b.claim(10) == []  # everything is held
    assert await a.renew() == uids_a
    with pytest.raises(WorkflowInternalError, match="node id"):
        await nodes(None).claim(1)


async def test_a_dead_nodes_instances_pass_to_another_and_its_writes_are_fenced(
    nodes: Callable[..., PostgresStore],
) -> None:
    await _seed(nodes, 3)
    dead, alive = nodes("dead", lease=0.0), nodes("alive")  # dead's leases run out at once
    await asyncio.gather(dead.open(), alive.open())
    assert len(await dead.claim(10)) == 3
    assert await dead.renew() == set()  # too late: they are lost
    taken = await alive.claim(10)
    assert {r.uid for r in taken} == {"u0", "u1", "u2"}
    with pytest.raises(LeaseLostError, match="node dead no longer holds u1"):
        await dead.commit(Tx(ident("u1"), instance={"status": "running"}, log=[LogEntry("x", 1.0)]))
    records = await alive.commit(
        Tx(ident("u1"), instance={"status": "running"}, log=[LogEntry("started", 1.0)])
    )
    assert [r["kind"] for r in records] == ["started"]
    history = await alive.history("u1")
    assert [r["kind"] for r in history] == ["queued", "started"]  # nothing from the dead node


async def test_released_and_due_instances_are_claimed_by_any_node(
    nodes: Callable[..., PostgresStore],
) -> None:
    plain = nodes(None)
    await plain.open()
    await plain.create(rows(3), [LogEntry("queued", 0.0)] * 3, skip_existing=False)
    for uid, wake_at in (("u1", 100.0), ("u2", 500.0)):  # hibernated until then
        await plain.commit(Tx(ident(uid), instance={"status": "waiting", "wake_at": wake_at}))
    a, b = nodes("a"), nodes("b")
    await asyncio.gather(a.open(), b.open())
    assert [r.uid for r in await a.claim(10, horizon=200.0)] == ["u0", "u1"]  # u2 not due
    await a.release(["u1"])
    assert [r.uid for r in await b.claim(10, horizon=1000.0)] == ["u1", "u2"]
    with pytest.raises(LeaseLostError):
        await a.commit(Tx(ident("u1"), log=[LogEntry("x", 1.0)]))


async def test_created_by_a_node_means_held_by_it(nodes: Callable[..., PostgresStore]) -> None:
    a, b = nodes("a"), nodes("b")
    await asyncio.gather(a.open(), b.open())
    ok, _ = await a.create(rows(2), [LogEntry("queued", 0.0)] * 2, skip_existing=False)
    assert ok == [True, True]
    assert await b.claim(10) == []
    assert await a.renew() == {"u0", "u1"}
    await a.commit(Tx(ident("u0"), instance={"status": "running"}))


async def test_an_event_committed_anywhere_wakes_every_listener(
    nodes: Callable[..., PostgresStore],
) -> None:
    await _seed(nodes, 2)
    a, b = nodes("a"), nodes("b")
    await asyncio.gather(a.open(), b.open())
    await a.claim(10)
    woken: list[str] = []
    arrived = asyncio.Event()

    def wake(uid: str) -> None:
        woken.append(uid)
        arrived.set()

    a.listen(wake)
    with pytest.raises(WorkflowInternalError, match="once"):
        a.listen(wake)
    await a.commit(Tx(ident("u1"), add_event=NewEvent("go", {"x": 1}, 1.0)))  # a holds u1
    with anyio.fail_after(20):  # hang guard only
        await arrived.wait()
    assert woken == ["u1"]
    # b does not hold u1: its write is fenced, so no event and no notification.
    with pytest.raises(LeaseLostError):
        await b.commit(Tx(ident("u1"), add_event=NewEvent("go", {"x": 2}, 2.0)))
    event = await a.oldest_event("u1", "go")
    assert event is not None
    assert event.payload == {"x": 1}


async def test_a_claim_skips_rows_another_claim_has_locked(
    nodes: Callable[..., PostgresStore], pg_url: str
) -> None:
    await _seed(nodes, 6)
    a = nodes("a")
    await a.open()
    with psycopg.connect(pg_url) as other:  # another node in the middle of its claim
        other.execute("SELECT uid FROM instances WHERE uid IN ('u0', 'u1') FOR UPDATE")
        with anyio.fail_after(20):  # hang guard: without SKIP LOCKED this would wait
            got = await a.claim(3)
        assert [r.uid for r in got] == ["u2", "u3", "u4"]
        other.rollback()
    assert [r.uid for r in await a.claim(3)] == ["u0", "u1", "u5"]

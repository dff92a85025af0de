"""The PostgreSQL store on a real server: every Store method, its parity with the SQLite store
(same script, same answers), migrations, durability settings, group commit, failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dynamic_workflows.runtime import open_store
from dynamic_workflows.runtime._postgres import PostgresStore
from dynamic_workflows.runtime._postgres_schema import LATEST, MIGRATIONS
from dynamic_workflows.runtime._sqlite import SQLiteStore
from dynamic_workflows.runtime._store import (
    DuplicateInstanceError,
    Ident,
    InstanceRow,
    LogEntry,
    LogRecord,
    NewEvent,
    StepRow,
    Store,
    Tx,
)
from dynamic_workflows.sdk import WorkflowInternalError

from ._server import PASSWORD, Server

TABLES = {"instances", "steps", "events", "log", "schema_version"}

# Values the engine may hand over, chosen to break a lossy encoding: key order, NUL and
# non-BMP characters, integers beyond 64 bits, floats that text must keep exactly.
AWKWARD: Any = {
    "z": 1,
    "a": [0.1, -0.0, 1e-300, 1.7976931348623157e308, 2**70, -(2**63)],
    "nul": "a\u0000b",
    "text": 'émoji 🎉 "quotes" \\ back\nslash',
    "nested": {"y": None, "b": True, "x": {"$bytes": "AAEC"}},
    "": "empty key",
}


def row(uid: str, instance_id: str, scope: str = "", envelope: Any = None) -> InstanceRow:
    return InstanceRow(
        uid, "WF", scope, instance_id, {"p": 1}, envelope, "queued", created=1.0, updated=1.0
    )


def ident(uid: str, instance_id: str, scope: str = "") -> Ident:
    return Ident(uid, instance_id, "WF", scope)


@pytest.fixture
async def pg(pg_url: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(pg_url, durability="os")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def _read(store: PostgresStore, sql: str) -> Any:
    """Run ``sql`` on the store's own connection (to see its session settings)."""
    return await store._read(lambda conn: conn.execute(sql).fetchall())


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {r[0] for r in rows}


def _versions(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY 1")]


# -- schema ---------------------------------------------------------------------------------


async def test_migrations_build_the_schema_from_zero_and_are_idempotent(pg_url: str) -> None:
    assert _tables(pg_url) == set()
    for _ in range(2):  # the second open finds everything in place and changes nothing
        store = PostgresStore(pg_url)
        await store.open()
        await store.close()
        assert _tables(pg_url) == TABLES
        assert _versions(pg_url) == [v for v, _ in MIGRATIONS] == list(range(1, LATEST + 1))


async def test_concurrent_opens_apply_each_migration_once(pg_url: str) -> None:
    stores = [PostgresStore(pg_url) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    await asyncio.gather(*(s.close() for s in stores))
    assert _versions(pg_url) == list(range(1, LATEST + 1))


async def test_a_newer_schema_is_refused(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    await store.open()
    await store.close()
    with psycopg.connect(pg_url) as conn:
        conn.execute("INSERT INTO schema_version VALUES (%s)", (LATEST + 1,))
    with pytest.raises(RuntimeError, match="newer than this code"):
        await PostgresStore(pg_url).open()


# -- settings and failures -----------------------------------------------------------------


@pytest.mark.parametrize(("durability", "setting"), [("fsync", "on"), ("os", "off")])
async def test_durability_maps_to_synchronous_commit(
    pg_url: str, durability: Any, setting: str
) -> None:
    store = open_store(pg_url, durability=durability)
    assert isinstance(store, PostgresStore)
    await store.open()
    try:
        assert await _read(store, "SHOW synchronous_commit") == [(setting,)]
    finally:
        await store.close()
    with pytest.raises(ValueError, match="durability"):
        PostgresStore(pg_url, durability="never")  # type: ignore[arg-type]


async def test_postgres_scheme_alias_and_password_never_shown(pg_url: str) -> None:
    store = open_store(pg_url.replace("postgresql://", "postgres://", 1))
    assert isinstance(store, PostgresStore)
    assert PASSWORD not in repr(store)
    await store.open()
    await store.close()


async def test_a_wrong_password_is_a_clear_error_without_the_password(pg_server: Server) -> None:
    url = pg_server.url().replace(PASSWORD, "not-the-password")
    store = PostgresStore(url)
    with pytest.raises(WorkflowInternalError, match="cannot open the store") as caught:
        await store.open()
    assert "not-the-password" not in str(caught.value)
    with pytest.raises(WorkflowInternalError, match="not open"):
        store.commit(Tx(ident("u", "a")))


async def test_a_dropped_connection_fails_the_jobs_in_hand_then_reconnects(
    pg: PostgresStore, pg_server: Server, pg_url: str
) -> None:
    await pg.create([row("u1", "a")], [LogEntry("queued", 1.0)], skip_existing=False)
    database = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_server.url(), autocommit=True) as admin:
        pids = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s "
            "AND application_name = 'dynamic-workflows'",
            (database,),
        ).fetchall()
        assert len(pids) == 1
        assert admin.execute("SELECT pg_terminate_backend(%s, 30000)", pids[0]).fetchone() == (
            True,
        )
    with pytest.raises(WorkflowInternalError):
        await pg.commit(Tx(ident("u1", "a"), log=[LogEntry("lost", 2.0)]))
    records = await pg.commit(Tx(ident("u1", "a"), log=[LogEntry("kept", 3.0)]))
    assert [r["kind"] for r in await pg.history("u1")] == ["queued", "kept"]
    assert records == (await pg.history("u1"))[1:]


# -- the Store methods -----------------------------------------------------------------------


async def test_create_is_atomic_and_skips_or_refuses_duplicates(pg: PostgresStore) -> None:
    ok, records = await pg.create([row("u1", "a")], [LogEntry("queued", 1.0)], skip_existing=False)
    assert ok == [True]
    assert records == await pg.history("u1")
    with pytest.raises(DuplicateInstanceError):
        await pg.create(
            [row("u2", "b"), row("u3", "a")],
            [LogEntry("queued", 1.0), LogEntry("queued", 1.0)],
            skip_existing=False,
        )
    assert await pg.get("u2") is None  # nothing half-written
    assert await pg.history("u2") == []
    ok, _ = await pg.create(
        [row("u2", "b"), row("u3", "a"), row("u4", "a", scope="t:x")],
        [LogEntry("queued", 1.0)] * 3,
        skip_existing=True,
    )
    assert ok == [True, False, True]  # same id in another scope is another instance
    assert await pg.count_instances("WF", None, None) == 3
    assert await pg.count_instances("WF", "t:x", "queued") == 1
    assert await pg.count_instances("OTHER", None, None) == 0


async def test_a_failing_write_fails_alone_in_its_group(pg: PostgresStore) -> None:
    await pg.create([row("u1", "a")], [LogEntry("queued", 1.0)], skip_existing=False)
    step = StepRow("x-1", "x", 1, "do", "complete", 1, {"timeout": 1}, value={"v": 1})
    good = pg.commit(Tx(ident("u1", "a"), steps=[step], instance={"status": "running"}))
    bad = pg.commit(Tx(ident("gone", "g"), instance={"status": "running"}))
    dup = pg.create([row("u9", "a")], [LogEntry("queued", 1.0)], skip_existing=False)
    # a uid already taken is refused by the server itself (it aborts the pipelined group)
    taken = pg.create([row("u1", "other id")], [LogEntry("queued", 1.0)], skip_existing=True)
    also_good = pg.commit(Tx(ident("u1", "a"), log=[LogEntry("started", 2.0)]))
    results = await asyncio.gather(good, bad, dup, taken, also_good, return_exceptions=True)
    assert isinstance(results[1], WorkflowInternalError)
    assert isinstance(results[2], DuplicateInstanceError)
    assert isinstance(results[3], WorkflowInternalError)
    assert "duplicate key" in str(results[3])
    assert not isinstance(results[0], BaseException)
    assert not isinstance(results[4], BaseException)
    assert await pg.find("WF", "", "other id") is None
    loaded = await pg.load("u1")
    assert loaded is not None
    instance, steps = loaded
    assert instance.status == "running"
    assert [(s.key, s.state, s.value) for s in steps] == [("x-1", "complete", {"v": 1})]
    assert [r["kind"] for r in await pg.history("u1")] == ["queued", "started"]


async def test_group_commit_shares_transactions_in_submission_order(pg_url: str) -> None:
    store = PostgresStore(pg_url, durability="fsync")
    await store.open()
    try:
        await store.create([row("u1", "a")], [LogEntry("queued", 1.0)], skip_existing=False)
        before = store.commits
        futures = [
            store.commit(Tx(ident("u1", "a"), log=[LogEntry("tick", float(i))])) for i in range(200)
        ]
        records = await asyncio.gather(*futures)
        assert [r[0]["ts"] for r in records] == [float(i) for i in range(200)]
        seqs = [r[0]["seq"] for r in records]
        assert seqs == sorted(seqs)  # applied in submission order
        assert store.commits - before < 200  # and grouped
        assert store.writes - store.commits > 0
    finally:
        await store.close()


async def test_events_consumed_once_and_reset(pg: PostgresStore) -> None:
    await pg.create([row("u1", "a")], [LogEntry("queued", 1.0)], skip_existing=False)
    for n in range(2):
        await pg.commit(Tx(ident("u1", "a"), add_event=NewEvent("t", n, float(n))))
    first = await pg.oldest_event("u1", "t")
    assert first is not None
    assert (first.type, first.payload, first.ts) == ("t", 0, 0.0)
    assert await pg.oldest_event("u1", "other") is None
    await pg.commit(Tx(ident("u1", "a"), consume_event=(first.seq, "w-1")))
    with pytest.raises(WorkflowInternalError, match="already consumed"):
        await pg.commit(Tx(ident("u1", "a"), consume_event=(first.seq, "w-2")))
    second = await pg.oldest_event("u1", "t")
    assert second is not None
    assert second.payload == 1
    await pg.commit(Tx(ident("u1", "a"), add_event=NewEvent("t", 2, 2.0, consumed_by="w-3")))
    second_again = await pg.oldest_event("u1", "t")
    assert second_again is not None
    assert second_again.seq == second.seq  # an event recorded as consumed is never pending
    await pg.commit(
        Tx(ident("u1", "a"), reset=True, steps=[StepRow("s-1", "s", 1, "do", "running")])
    )
    assert await pg.oldest_event("u1", "t") is None
    loaded = await pg.load("u1")
    assert loaded is not None
    assert [s.key for s in loaded[1]] == ["s-1"]


async def test_waiters_timers_and_steps_keep_their_order(pg: PostgresStore) -> None:
    await pg.create([row("u1", "a")], [LogEntry("queued", 1.0)], skip_existing=False)
    steps = [
        StepRow("w-1", "w", 1, "event", "waiting", start=5.0, wake_at=100.0, event_type="go"),
        StepRow("w-2", "w", 2, "event", "waiting", start=4.0, wake_at=50.0, event_type="go"),
        StepRow("n-1", "n", 1, "sleep", "waiting", start=1.0, wake_at=10.0),
        StepRow("r-1", "r", 1, "do", "retrying", attempts=1, start=1.0, wake_at=20.0),
        StepRow("d-1", "d", 1, "do", "complete", attempts=1, start=1.0, end=2.0, value=None),
    ]
    await pg.commit(Tx(ident("u1", "a"), steps=steps))
    waiter = await pg.oldest_waiter("u1", "go", 10.0)
    assert waiter is not None
    assert waiter.key == "w-2"  # oldest start first
    waiter = await pg.oldest_waiter("u1", "go", 60.0)
    assert waiter is not None
    assert waiter.key == "w-1"  # w-2 timed out by then
    assert await pg.oldest_waiter("u1", "go", 100.0) is None
    assert await pg.oldest_waiter("u1", "stop", 0.0) is None
    await pg.commit(Tx(ident("u1", "a"), shift_timers=7.5))
    loaded = await pg.load("u1")
    assert loaded is not None
    wake = {s.key: s.wake_at for s in loaded[1]}
    assert wake == {"w-1": 107.5, "w-2": 57.5, "n-1": 17.5, "r-1": 27.5, "d-1": None}
    assert [s.key for s in loaded[1]] == ["w-1", "w-2", "n-1", "r-1", "d-1"]  # first insert order
    done = StepRow("w-2", "w", 2, "event", "complete", start=4.0, end=9.0, value={"ok": 1})
    await pg.commit(Tx(ident("u1", "a"), steps=[done]))
    loaded = await pg.load("u1")
    assert loaded is not None
    assert [s.key for s in loaded[1]] == ["w-1", "w-2", "n-1", "r-1", "d-1"]  # upsert keeps it
    assert loaded[1][1] == done


async def test_delete_drops_everything_but_returns_its_log_lines(pg: PostgresStore) -> None:
    await pg.create([row("u1", "a")], [LogEntry("queued", 1.0)], skip_existing=False)
    await pg.commit(
        Tx(
            ident("u1", "a"),
            steps=[StepRow("s-1", "s", 1, "do", "running")],
            add_event=NewEvent("t", 1, 1.0),
        )
    )
    records = await pg.commit(Tx(ident("u1", "a"), delete=True, log=[LogEntry("deleted", 2.0)]))
    assert [r["kind"] for r in records] == ["deleted"]
    assert await pg.get("u1") is None
    assert await pg.load("u1") is None
    assert await pg.history("u1") == []
    assert await pg.oldest_event("u1", "t") is None
    with pytest.raises(WorkflowInternalError, match="gone"):
        await pg.commit(Tx(ident("u1", "a"), instance={"status": "running"}))
    with pytest.raises(WorkflowInternalError, match="unknown instance columns"):
        await pg.commit(Tx(ident("u1", "a"), instance={"params": 1}))


async def test_unfinished_list_and_history_paging(pg: PostgresStore) -> None:
    rows = [row(f"u{i}", f"i{i}", scope="s" if i % 2 else "") for i in range(6)]
    for r in rows:
        r.created = 10.0 if r.uid in ("u4", "u5") else float(r.uid[1:])
    await pg.create(rows, [LogEntry("queued", 1.0)] * 6, skip_existing=False)
    statuses = ["complete", "running", "waiting", "errored", "waitingForPause", "paused"]
    for i, status in enumerate(statuses):
        await pg.commit(Tx(ident(f"u{i}", f"i{i}"), instance={"status": status}))
    assert [r.uid for r in await pg.unfinished()] == ["u1", "u2", "u4"]
    listed = await pg.list_instances(None, None, None, 50, 0)
    assert [r.uid for r in listed] == ["u5", "u4", "u3", "u2", "u1", "u0"]  # newest first
    assert [r.uid for r in await pg.list_instances(None, None, None, 2, 1)] == ["u4", "u3"]
    assert [r.uid for r in await pg.list_instances("WF", "s", None, 50, 0)] == ["u5", "u3", "u1"]
    assert [r.uid for r in await pg.list_instances(None, None, "paused", 50, 0)] == ["u5"]
    for _ in range(3):
        await pg.commit(Tx(ident("u1", "i1"), log=[LogEntry("a", 2.0), LogEntry("b", 3.0, "s-1")]))
    history = await pg.history("u1")
    assert [r["kind"] for r in history] == ["queued"] + ["a", "b"] * 3
    assert await pg.history("u1", history[3]["seq"]) == history[4:]
    assert await pg.history("nobody") == []


# -- parity with SQLite: the same script, the same answers -------------------------------------


async def _script(store: Store) -> list[Any]:
    """Exercise every method; return every answer with log/event seqs replaced by their rank
    (the two stores number differently only after a rolled-back write)."""
    out: list[Any] = []
    envelope = {"tenant": "t1", "z": 0, "a": [AWKWARD]}
    out.append(
        await store.create(
            [
                row("u1", "one", envelope=envelope),
                row("u2", "two", scope="t:a", envelope=None),
            ],
            [LogEntry("queued", 1.25, data=AWKWARD), LogEntry("queued", 1.5)],
            skip_existing=False,
        )
    )
    with pytest.raises(DuplicateInstanceError):
        await store.create([row("u3", "one")], [LogEntry("queued", 1.0)], skip_existing=False)
    steps = [
        StepRow(
            "a-1", "a", 1, "do", "complete", 2, {"retries": {"limit": 3}}, 1.0, 2.0, None, AWKWARD
        ),
        StepRow(
            "a-2",
            "a",
            2,
            "do",
            "errored",
            3,
            None,
            2.0,
            3.0,
            None,
            None,
            {"name": "Error", "message": "ü"},
        ),
        StepRow("z-1", "z", 1, "do", "complete", 1, None, 2.0, 3.0, None, None),  # null result
        StepRow(
            "w-1", "w", 1, "event", "waiting", 0, {"timeout": 9}, 3.0, None, 90.0, event_type="go"
        ),
        StepRow("n-1", "n", 1, "sleep", "waiting", 0, None, 3.0, None, 33.0),
    ]
    out.append(
        await store.commit(
            Tx(
                ident("u1", "one"),
                instance={"status": "waiting", "updated": 3.0, "wake_at": 33.0},
                steps=steps,
                log=[
                    LogEntry("step_succeeded", 2.0, "a-1", {"output": AWKWARD}),
                    LogEntry("sleep_started", 3.0, "n-1"),
                ],
                add_event=NewEvent("go", AWKWARD, 2.5),
            )
        )
    )
    out.append(await store.commit(Tx(ident("u1", "one"), shift_timers=0.5)))
    out.append(
        await store.commit(
            Tx(
                ident("u2", "two", "t:a"),
                instance={"status": "complete", "output": AWKWARD, "error": None, "paused_at": 7.0},
            )
        )
    )
    out.append(
        await store.commit(
            Tx(
                ident("u1", "one"),
                instance={"status": "errored", "error": {"name": "E", "message": "m"}},
            )
        )
    )
    out.append(await store.get("u1"))
    out.append(await store.get("nope"))
    out.append(await store.find("WF", "t:a", "two"))
    out.append(await store.find("WF", "", "two"))
    out.append(await store.load("u1"))
    event = await store.oldest_event("u1", "go")
    out.append(event)
    out.append(await store.oldest_waiter("u1", "go", 10.0))
    out.append(await store.unfinished())
    out.append(await store.list_instances(None, None, None, 10, 0))
    out.append(await store.count_instances(None, "t:a", "complete"))
    out.append(await store.history("u1"))
    out.append(await store.history("u2"))
    return _rank_seqs(out)


def _rank_seqs(answers: list[Any]) -> list[Any]:
    seqs: set[int] = set()

    def collect(value: Any) -> None:
        if isinstance(value, dict) and "seq" in value and "kind" in value:
            seqs.add(value["seq"])
        elif isinstance(value, list | tuple):
            for item in value:
                collect(item)

    collect(answers)
    rank = {seq: n for n, seq in enumerate(sorted(seqs))}

    def renumber(value: Any) -> Any:
        if isinstance(value, dict) and "seq" in value and "kind" in value:
            return {**value, "seq": rank[value["seq"]]}
        if isinstance(value, list):
            return [renumber(v) for v in value]
        if isinstance(value, tuple):
            return tuple(renumber(v) for v in value)
        if hasattr(value, "seq") and hasattr(value, "payload"):  # EventRow
            return (value.type, value.payload, value.ts)
        return value

    return [renumber(a) for a in answers]


def _key_orders(value: Any) -> Any:
    """``value`` with every dict turned into its item list, so key order is compared too."""
    if isinstance(value, dict):
        return [(k, _key_orders(v)) for k, v in value.items()]
    if isinstance(value, list | tuple):
        return [_key_orders(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return [(k, _key_orders(getattr(value, k))) for k in value.__dataclass_fields__]
    return value


async def test_every_answer_matches_the_sqlite_store(pg: PostgresStore, tmp_path: Path) -> None:
    lite = SQLiteStore(str(tmp_path / "parity.db"), durability="os")
    await lite.open()
    try:
        expected = await _script(lite)
    finally:
        await lite.close()
    got = await _script(pg)
    assert got == expected
    assert _key_orders(got) == _key_orders(expected)  # same key order, same float bits
    loaded = got[9]
    assert loaded[1][0].value == AWKWARD
    assert list(loaded[1][0].value) == list(AWKWARD)


async def test_committed_records_are_what_history_returns(pg: PostgresStore) -> None:
    _, created = await pg.create([row("u1", "a")], [LogEntry("queued", 1.0)], skip_existing=False)
    committed: list[LogRecord] = list(created)
    for n in range(5):
        committed += await pg.commit(
            Tx(ident("u1", "a"), log=[LogEntry("x", float(n), None, {"n": n, "v": AWKWARD})] * 2)
        )
    assert await pg.history("u1") == committed

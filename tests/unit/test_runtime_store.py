"""The SQLite store: migrations, atomic transitions, group commit, clear URL errors."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from dynamic_workflows.runtime import open_store
from dynamic_workflows.runtime._schema import LATEST, MIGRATIONS, migrate
from dynamic_workflows.runtime._sqlite import SQLiteStore
from dynamic_workflows.runtime._store import (
    DuplicateInstanceError,
    Ident,
    InstanceRow,
    LogEntry,
    StepRow,
    Tx,
)
from dynamic_workflows.sdk import WorkflowInternalError


def row(uid: str, instance_id: str, scope: str = "") -> InstanceRow:
    return InstanceRow(uid, "WF", scope, instance_id, {"p": 1}, None, "queued", created=1.0)


def ident(uid: str, instance_id: str) -> Ident:
    return Ident(uid, instance_id, "WF", "")


def test_migrations_build_the_schema_once(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    assert migrate(conn) == 0
    assert migrate(conn) == LATEST  # a second run finds everything in place
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"instances", "steps", "events", "log", "schema_version"} <= tables
    versions = [r[0] for r in conn.execute("SELECT version FROM schema_version")]
    assert versions == [v for v, _ in MIGRATIONS]
    conn.execute("INSERT INTO schema_version VALUES (?)", (LATEST + 1,))
    with pytest.raises(RuntimeError, match="newer than this code"):
        migrate(conn)
    conn.close()


def test_open_store_urls(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/a/b/state.db", durability="os")
    assert isinstance(store, SQLiteStore)
    assert store.path == f"{tmp_path}/a/b/state.db"
    pg = open_store("postgresql://u:secret@localhost/db", durability="os")  # not opened here
    assert type(pg).__name__ == "PostgresStore" and pg.durability == "os"
    assert "secret" not in repr(pg)  # tests/postgres/ covers this store against a real server
    with pytest.raises(ValueError, match="unsupported store URL"):
        open_store("mysql://x")
    with pytest.raises(ValueError, match="durability"):
        SQLiteStore("x.db", durability="never")  # type: ignore[arg-type]


async def test_parent_dirs_wal_and_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "state.db"
    store = SQLiteStore(str(path), durability="fsync")
    await store.open()
    await store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


async def test_create_is_atomic_and_skips_or_refuses_duplicates(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "s.db"), durability="os")
    await store.open()
    try:
        ok, records = await store.create(
            [row("u1", "a")], [LogEntry("queued", 1.0)], skip_existing=False
        )
        assert ok == [True]
        assert records[0]["kind"] == "queued"
        with pytest.raises(DuplicateInstanceError):
            await store.create(
                [row("u2", "b"), row("u3", "a")],
                [LogEntry("queued", 1.0), LogEntry("queued", 1.0)],
                skip_existing=False,
            )
        assert await store.get("u2") is None  # nothing half-written
        ok, _ = await store.create(
            [row("u2", "b"), row("u3", "a"), row("u4", "a", scope="t:x")],
            [LogEntry("queued", 1.0)] * 3,
            skip_existing=True,
        )
        assert ok == [True, False, True]  # same id in another scope is another instance
        assert await store.count_instances("WF", None, None) == 3
    finally:
        await store.close()


async def test_a_failing_write_fails_alone_in_its_group(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "s.db"), durability="os")
    await store.open()
    try:
        await store.create([row("u1", "a")], [LogEntry("queued", 1.0)], skip_existing=False)
        step = StepRow("x-1", "x", 1, "do", "complete", 1, {"timeout": 1}, value={"v": 1})
        good = store.commit(Tx(ident("u1", "a"), steps=[step], instance={"status": "running"}))
        bad = store.commit(Tx(ident("gone", "g"), instance={"status": "running"}))
        also_good = store.commit(Tx(ident("u1", "a"), log=[LogEntry("started", 2.0)]))
        results = await asyncio.gather(good, bad, also_good, return_exceptions=True)
        assert isinstance(results[1], WorkflowInternalError)
        assert not isinstance(results[0], BaseException)
        assert not isinstance(results[2], BaseException)
        loaded = await store.load("u1")
        assert loaded is not None
        instance, steps = loaded
        assert instance.status == "running"
        assert [(s.key, s.state, s.value) for s in steps] == [("x-1", "complete", {"v": 1})]
        kinds = [r["kind"] for r in await store.history("u1")]
        assert kinds == ["queued", "started"]
    finally:
        await store.close()


async def test_group_commit_shares_transactions(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "s.db"), durability="fsync")
    await store.open()
    try:
        await store.create([row("u1", "a")], [LogEntry("queued", 1.0)], skip_existing=False)
        before = store.commits
        futures = [
            store.commit(Tx(ident("u1", "a"), log=[LogEntry("tick", float(i))])) for i in range(200)
        ]
        records = await asyncio.gather(*futures)
        assert [r[0]["data"] for r in records] == [{}] * 200
        seqs = [r[0]["seq"] for r in records]
        assert seqs == sorted(seqs)  # applied in submission order
        assert store.commits - before < 200  # and grouped
    finally:
        await store.close()


async def test_events_consumed_once_and_reset(tmp_path: Path) -> None:
    from dynamic_workflows.runtime._store import NewEvent

    store = SQLiteStore(str(tmp_path / "s.db"), durability="os")
    await store.open()
    try:
        await store.create([row("u1", "a")], [LogEntry("queued", 1.0)], skip_existing=False)
        for n in range(2):
            await store.commit(Tx(ident("u1", "a"), add_event=NewEvent("t", n, float(n))))
        first = await store.oldest_event("u1", "t")
        assert first is not None
        assert first.payload == 0
        await store.commit(Tx(ident("u1", "a"), consume_event=(first.seq, "w-1")))
        with pytest.raises(WorkflowInternalError, match="already consumed"):
            await store.commit(Tx(ident("u1", "a"), consume_event=(first.seq, "w-2")))
        second = await store.oldest_event("u1", "t")
        assert second is not None
        assert second.payload == 1
        await store.commit(Tx(ident("u1", "a"), reset=True))
        assert await store.oldest_event("u1", "t") is None
    finally:
        await store.close()

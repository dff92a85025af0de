"""The SQLite store: one WAL file, one dedicated thread, group commit.

Why a thread: ``sqlite3`` blocks, and the event loop must not wait on an fsync. Why one
thread: SQLite has one writer anyway, and a single FIFO makes "applied in submission order"
free. Group commit: the thread drains every job queued while the previous commit was
flushing and applies the writes in one transaction (each in a savepoint, so one bad write
fails alone); every caller is answered right after that commit, never later. A read first
commits the writes queued before it, so it sees them and never sees anything uncommitted.

Approaches dropped: ``aiosqlite`` (a thread per connection and a commit per call, no
grouping); a reader pool (reads are rare on the hot path; one thread keeps ordering simple).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Callable
from typing import TypeVar

from ..sdk import WorkflowInternalError
from ._json import dumps, loads
from ._rows import filters, instance_row, log_record, step_row
from ._schema import migrate
from ._store import (
    DuplicateInstanceError,
    Durability,
    EventRow,
    Ident,
    InstanceRow,
    LogEntry,
    LogRecord,
    StepRow,
    Tx,
)
from ._writer import Job, Results, WriterThread

T = TypeVar("T")
_INSTANCE_COLUMNS = {"status", "output", "error", "updated", "paused_at", "wake_at"}
_JSON_COLUMNS = {"output", "error"}
_INSTANCE_SELECT = (
    "SELECT uid, workflow, scope, id, params, envelope, status, output, error, created, "
    "updated, paused_at, wake_at FROM instances"
)
_STEP_SELECT = (
    'SELECT key, name, count, kind, state, attempts, config, start, "end", wake_at, value, '
    "error, event_type FROM steps"
)


class SQLiteStore(WriterThread[sqlite3.Connection]):
    """:class:`~._store.Store` on one SQLite file in WAL mode."""

    thread_name = "dynwf-sqlite"

    def __init__(self, path: str, *, durability: Durability = "fsync") -> None:
        if durability not in ("fsync", "os"):
            raise ValueError(f"durability must be 'fsync' or 'os', not {durability!r}")
        super().__init__()
        self.path = path
        self.durability: Durability = durability

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        if self._thread is None:
            await asyncio.to_thread(_make_parent, self.path)
        await self._start()

    async def close(self) -> None:
        await self._stop()

    # -- the thread --------------------------------------------------------------------

    def _open_connection(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        sync = "FULL" if self.durability == "fsync" else "NORMAL"
        conn.execute(f"PRAGMA synchronous={sync}")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA foreign_keys=OFF")
        migrate(conn)
        return conn

    def _failed(self, conn: sqlite3.Connection, error: Exception) -> Exception:
        return _internal(error)

    def _write_group(self, conn: sqlite3.Connection, writes: list[Job]) -> Results:
        results: Results = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for _, fn, future in writes:
                conn.execute("SAVEPOINT w")
                try:
                    value = fn(conn)
                except Exception as error:
                    conn.execute("ROLLBACK TO w")
                    conn.execute("RELEASE w")
                    results.append((future, False, _internal(error)))
                else:
                    conn.execute("RELEASE w")
                    results.append((future, True, value))
            conn.execute("COMMIT")
            self.commits += 1
            self.writes += len(writes)
        except Exception as error:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            failed = WorkflowInternalError(f"store commit failed: {error}")
            results = [(future, False, failed) for _, _, future in writes]
        return results

    def _submit(self, write: bool, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        return self._enqueue(write, fn)

    # -- writes ------------------------------------------------------------------------

    def commit(self, tx: Tx) -> asyncio.Future[list[LogRecord]]:
        return self._submit(True, lambda conn: _apply(conn, tx))

    async def create(
        self, rows: list[InstanceRow], logs: list[LogEntry], *, skip_existing: bool
    ) -> tuple[list[bool], list[LogRecord]]:
        return await self._submit(True, lambda conn: _create(conn, rows, logs, skip_existing))

    # -- reads -------------------------------------------------------------------------

    async def get(self, uid: str) -> InstanceRow | None:
        def read(conn: sqlite3.Connection) -> InstanceRow | None:
            row = conn.execute(f"{_INSTANCE_SELECT} WHERE uid = ?", (uid,)).fetchone()
            return instance_row(row) if row else None

        return await self._submit(False, read)

    async def find(self, workflow: str, scope: str, id: str) -> InstanceRow | None:
        def read(conn: sqlite3.Connection) -> InstanceRow | None:
            row = conn.execute(
                f"{_INSTANCE_SELECT} WHERE workflow = ? AND scope = ? AND id = ?",
                (workflow, scope, id),
            ).fetchone()
            return instance_row(row) if row else None

        return await self._submit(False, read)

    async def load(self, uid: str) -> tuple[InstanceRow, list[StepRow]] | None:
        def read(conn: sqlite3.Connection) -> tuple[InstanceRow, list[StepRow]] | None:
            row = conn.execute(f"{_INSTANCE_SELECT} WHERE uid = ?", (uid,)).fetchone()
            if row is None:
                return None
            steps = conn.execute(f"{_STEP_SELECT} WHERE uid = ? ORDER BY rowid", (uid,))
            return instance_row(row), [step_row(s) for s in steps]

        return await self._submit(False, read)

    async def oldest_event(self, uid: str, type: str) -> EventRow | None:
        def read(conn: sqlite3.Connection) -> EventRow | None:
            row = conn.execute(
                "SELECT seq, type, payload, ts FROM events WHERE uid = ? AND type = ? "
                "AND consumed_by IS NULL ORDER BY seq LIMIT 1",
                (uid, type),
            ).fetchone()
            return EventRow(row[0], row[1], loads(row[2]), row[3]) if row else None

        return await self._submit(False, read)

    async def oldest_waiter(self, uid: str, type: str, now: float) -> StepRow | None:
        def read(conn: sqlite3.Connection) -> StepRow | None:
            row = conn.execute(
                f"{_STEP_SELECT} WHERE uid = ? AND kind = 'event' AND state = 'waiting' "
                "AND event_type = ? AND wake_at > ? ORDER BY start, rowid LIMIT 1",
                (uid, type, now),
            ).fetchone()
            return step_row(row) if row else None

        return await self._submit(False, read)

    async def unfinished(self) -> list[InstanceRow]:
        def read(conn: sqlite3.Connection) -> list[InstanceRow]:
            rows = conn.execute(
                f"{_INSTANCE_SELECT} WHERE status IN "
                "('queued', 'running', 'waiting', 'waitingForPause') ORDER BY created"
            )
            return [instance_row(r) for r in rows]

        return await self._submit(False, read)

    async def list_instances(
        self,
        workflow: str | None,
        scope: str | None,
        status: str | None,
        limit: int,
        offset: int,
    ) -> list[InstanceRow]:
        where, args = filters(workflow, scope, status, placeholder="?")

        def read(conn: sqlite3.Connection) -> list[InstanceRow]:
            rows = conn.execute(
                f"{_INSTANCE_SELECT}{where} ORDER BY created DESC, rowid DESC LIMIT ? OFFSET ?",
                (*args, limit, offset),
            )
            return [instance_row(r) for r in rows]

        return await self._submit(False, read)

    async def count_instances(
        self, workflow: str | None, scope: str | None, status: str | None
    ) -> int:
        where, args = filters(workflow, scope, status, placeholder="?")

        def read(conn: sqlite3.Connection) -> int:
            sql = "SELECT count(*) FROM instances" + where  # noqa: S608 - fixed column names; values are bound
            return int(conn.execute(sql, args).fetchone()[0])

        return await self._submit(False, read)

    async def history(self, uid: str, after_seq: int = 0) -> list[LogRecord]:
        def read(conn: sqlite3.Connection) -> list[LogRecord]:
            rows = conn.execute(
                "SELECT seq, uid, instance_id, workflow, scope, ts, kind, step, data FROM log "
                "WHERE uid = ? AND seq > ? ORDER BY seq",
                (uid, after_seq),
            )
            return [log_record(r) for r in rows]

        return await self._submit(False, read)


def _make_parent(path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def _internal(error: Exception) -> Exception:
    if isinstance(error, DuplicateInstanceError | WorkflowInternalError):
        return error
    return WorkflowInternalError(f"store failure: {error}")


def _insert_log(conn: sqlite3.Connection, ident: Ident, entries: list[LogEntry]) -> list[LogRecord]:
    records: list[LogRecord] = []
    for entry in entries:
        cursor = conn.execute(
            "INSERT INTO log (uid, instance_id, workflow, scope, ts, kind, step, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                ident.uid,
                ident.instance_id,
                ident.workflow,
                ident.scope,
                entry.ts,
                entry.kind,
                entry.step,
                dumps(entry.data),
            ),
        )
        records.append(
            {
                "seq": cursor.lastrowid,
                "uid": ident.uid,
                "instance_id": ident.instance_id,
                "workflow": ident.workflow,
                "scope": ident.scope,
                "ts": entry.ts,
                "kind": entry.kind,
                "step": entry.step,
                "data": entry.data,
            }
        )
    return records


def _apply(conn: sqlite3.Connection, tx: Tx) -> list[LogRecord]:
    uid = tx.ident.uid
    if tx.delete:
        for table in ("steps", "events", "log", "instances"):
            conn.execute(f"DELETE FROM {table} WHERE uid = ?", (uid,))  # noqa: S608
        records = _insert_log(conn, tx.ident, tx.log)
        conn.execute("DELETE FROM log WHERE uid = ?", (uid,))
        return records
    if tx.reset:
        conn.execute("DELETE FROM steps WHERE uid = ?", (uid,))
        conn.execute("DELETE FROM events WHERE uid = ?", (uid,))
    if tx.shift_timers:
        conn.execute(
            "UPDATE steps SET wake_at = wake_at + ? WHERE uid = ? AND wake_at IS NOT NULL "
            "AND state IN ('waiting', 'retrying')",
            (tx.shift_timers, uid),
        )
    for step in tx.steps:
        conn.execute(
            "INSERT INTO steps (uid, key, name, count, kind, state, attempts, config, start, "
            '"end", wake_at, value, error, event_type) '
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (uid, key) DO UPDATE SET kind = excluded.kind, state = excluded.state, "
            "attempts = excluded.attempts, config = excluded.config, start = excluded.start, "
            '"end" = excluded."end", wake_at = excluded.wake_at, value = excluded.value, '
            "error = excluded.error, event_type = excluded.event_type",
            (
                uid,
                step.key,
                step.name,
                step.count,
                step.kind,
                step.state,
                step.attempts,
                None if step.config is None else dumps(step.config),
                step.start,
                step.end,
                step.wake_at,
                dumps(step.value) if step.state == "complete" else None,
                None if step.error is None else dumps(step.error),
                step.event_type,
            ),
        )
    if tx.consume_event is not None:
        seq, key = tx.consume_event
        cursor = conn.execute(
            "UPDATE events SET consumed_by = ? WHERE seq = ? AND uid = ? AND consumed_by IS NULL",
            (key, seq, uid),
        )
        if cursor.rowcount != 1:
            raise WorkflowInternalError(f"event {seq} was already consumed")
    if tx.add_event is not None:
        event = tx.add_event
        conn.execute(
            "INSERT INTO events (uid, type, payload, ts, consumed_by) VALUES (?, ?, ?, ?, ?)",
            (uid, event.type, dumps(event.payload), event.ts, event.consumed_by),
        )
    if tx.instance:
        columns = sorted(tx.instance)
        if set(columns) - _INSTANCE_COLUMNS:
            raise WorkflowInternalError(f"unknown instance columns {columns}")
        values = [
            dumps(tx.instance[c])
            if c in _JSON_COLUMNS and tx.instance[c] is not None
            else tx.instance[c]
            for c in columns
        ]
        assignments = ", ".join(f"{c} = ?" for c in columns)
        cursor = conn.execute(
            f"UPDATE instances SET {assignments} WHERE uid = ?",  # noqa: S608
            (*values, uid),
        )
        if cursor.rowcount != 1:
            raise WorkflowInternalError(f"instance {uid} is gone")
    return _insert_log(conn, tx.ident, tx.log)


def _create(
    conn: sqlite3.Connection, rows: list[InstanceRow], logs: list[LogEntry], skip: bool
) -> tuple[list[bool], list[LogRecord]]:
    inserted: list[bool] = []
    records: list[LogRecord] = []
    for row, entry in zip(rows, logs, strict=True):
        cursor = conn.execute(
            "INSERT INTO instances (uid, workflow, scope, id, params, envelope, status, "
            "created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (workflow, scope, id) DO NOTHING",
            (
                row.uid,
                row.workflow,
                row.scope,
                row.id,
                dumps(row.params),
                None if row.envelope is None else dumps(row.envelope),
                row.status,
                row.created,
                row.updated,
            ),
        )
        if cursor.rowcount != 1:
            if not skip:
                raise DuplicateInstanceError(row.id)
            inserted.append(False)
            continue
        inserted.append(True)
        ident = Ident(row.uid, row.id, row.workflow, row.scope)
        records.extend(_insert_log(conn, ident, [entry]))
    return inserted, records

"""The PostgreSQL store: one connection, one dedicated thread, group commit, one round trip.

Same shape as the SQLite store, for the same reasons: psycopg's blocking API on a thread
keeps the event loop free of network waits and commits, and one FIFO thread makes "applied
in submission order" free. Group commit: the thread drains every job queued while the
previous commit was in flight and applies the writes in one transaction; every caller is
answered right after that commit. The group is pipelined: BEGIN, every write's statements
and COMMIT go out together and their results come back together, one round trip whatever
the group's size (it matters once the server is on another machine). That works because no
statement needs an earlier one's result: each write checks itself on the server
(``dynwf_expect`` in ``_postgres_schema.py`` raises a SQLSTATE mapped back to the engine's
error). If anything in the group fails, it is rolled back and replayed with one savepoint
per write, so a bad write fails alone. A read first commits the writes queued before it.
``durability="fsync"`` is ``synchronous_commit=on``, ``"os"`` is ``off`` (a server crash may
lose the last commits; the database stays consistent).

Several dispatchers (``node=...``, not driven by the engine yet, see POSTGRES-2 in
team/engine-findings.md): ``claim`` takes unfinished instances with ``FOR UPDATE SKIP
LOCKED`` under a lease on the server's clock, ``renew``/``release`` keep or drop them, every
write is fenced (it commits only while this node holds the instance), and ``listen`` hears
the NOTIFY every committed event sends. Without a node id none of this runs.

A broken connection (the server restarted) fails the jobs in hand with a
``WorkflowInternalError`` and is reopened for the next ones.

Approaches dropped: psycopg's ``AsyncConnection`` on the engine's loop (a commit per call,
no grouping, and every statement's round trip on the loop); a connection pool (one writer
keeps the order; reads are rare on the hot path); jsonb columns (see the schema); checks
on the client between statements (a round trip each).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import psycopg
from psycopg.pq import TransactionStatus

from ..sdk import WorkflowInternalError
from ._json import dumps, loads
from ._postgres_schema import DUPLICATE, GONE, LEASE_LOST, migrate
from ._rows import filters, instance_row, log_record, step_row
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
Conn = psycopg.Connection[Any]
Finish = Callable[[], Any]  # a write's second half: its answer, once its results are in
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
_STEP_UPSERT = (
    "INSERT INTO steps (uid, key, name, count, kind, state, attempts, config, start, "
    '"end", wake_at, value, error, event_type) '
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (uid, key) DO UPDATE SET kind = excluded.kind, state = excluded.state, "
    "attempts = excluded.attempts, config = excluded.config, start = excluded.start, "
    '"end" = excluded."end", wake_at = excluded.wake_at, value = excluded.value, '
    "error = excluded.error, event_type = excluded.event_type"
)
_CREATE = (
    "WITH new AS (INSERT INTO instances (uid, workflow, scope, id, params, envelope, "
    "status, created, updated, owner, lease_until) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, dynwf_now() + %s) "
    "ON CONFLICT (workflow, scope, id) DO NOTHING RETURNING uid), "
    "line AS (INSERT INTO log (uid, instance_id, workflow, scope, ts, kind, step, data) "
    "SELECT uid, %s, %s, %s, %s, %s, %s, %s FROM new RETURNING seq) "
)
_UNFINISHED = "('queued', 'running', 'waiting', 'waitingForPause')"
_CLAIM = (
    "UPDATE instances SET owner = %s, lease_until = dynwf_now() + %s WHERE uid IN ("  # noqa: S608 - constants only
    f"SELECT uid FROM instances WHERE status IN {_UNFINISHED} "
    "AND (owner IS NULL OR lease_until <= dynwf_now()) "
    "AND (wake_at IS NULL OR %s::double precision IS NULL OR wake_at <= %s) "
    "ORDER BY created, ord LIMIT %s FOR UPDATE SKIP LOCKED) "
    "RETURNING uid, workflow, scope, id, params, envelope, status, output, error, created, "
    "updated, paused_at, wake_at"
)
_FENCE = (
    "SELECT dynwf_expect((SELECT count(*) FROM (SELECT 1 FROM instances WHERE uid = %s "
    "AND owner = %s AND lease_until > dynwf_now() FOR UPDATE) AS mine), 1, %s, %s)"
)
_CREATE_SKIP = _CREATE + "SELECT (SELECT seq FROM line)"  # noqa: S608 - constants only
_CREATE_STRICT = (  # a taken id fails the statement, so the whole call
    _CREATE  # noqa: S608 - constants only
    + "SELECT (SELECT seq FROM line), dynwf_expect((SELECT count(*) FROM line), 1, %s, %s)"
)


class LeaseLostError(WorkflowInternalError):
    """A node wrote to an instance it no longer holds (its lease ran out or was taken)."""


class PostgresStore(WriterThread[Conn]):
    """:class:`~._store.Store` on one PostgreSQL database (``postgresql://`` URL)."""

    thread_name = "dynwf-postgres"

    def __init__(
        self,
        url: str,
        *,
        durability: Durability = "fsync",
        node: str | None = None,
        lease: float = 30.0,
    ) -> None:
        """``node``: this dispatcher's id when several share the database (see the
        "Several dispatchers" section below); None (the default) is the single-dispatcher
        store, which never looks at leases."""
        if durability not in ("fsync", "os"):
            raise ValueError(f"durability must be 'fsync' or 'os', not {durability!r}")
        super().__init__()
        self.url = url
        self.durability: Durability = durability
        self.node = node
        self.lease = float(lease)
        self._listener: threading.Thread | None = None
        self._stop_listening = threading.Event()

    def __repr__(self) -> str:  # never show the password
        return f"PostgresStore({_redact(self.url)!r}, durability={self.durability!r})"

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        await self._start()

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            self._stop_listening.set()
            await asyncio.to_thread(listener.join)
        await self._stop()

    # -- the thread --------------------------------------------------------------------

    def _connect(self) -> Conn:
        conn: Conn = psycopg.connect(
            self.url, autocommit=True, application_name="dynamic-workflows", connect_timeout=10
        )
        try:
            sync = "on" if self.durability == "fsync" else "off"
            conn.execute(f"SET synchronous_commit = {sync}")
            conn.execute("SET TIME ZONE 'UTC'")
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_connection(self) -> Conn:
        try:
            conn = self._connect()
            try:
                migrate(conn)
            except BaseException:
                conn.close()
                raise
        except Exception as error:
            raise _open_error(self.url, error) from error
        return conn

    def _fresh(self, conn: Conn) -> Conn:
        if not conn.broken and not conn.closed:
            return conn
        conn.close()
        try:
            return self._connect()
        except psycopg.Error:
            return conn  # still broken: the jobs fail with the connection's error

    def _failed(self, conn: Conn, error: Exception) -> Exception:
        _drop_if_lost(conn, error)
        return _internal(error)

    def _write_group(self, conn: Conn, writes: list[Job]) -> Results:
        results: Results
        try:
            try:
                # One round trip for the whole group: BEGIN, every statement (each checks
                # itself on the server) and COMMIT are sent together, then read together.
                with conn.pipeline():
                    conn.execute("BEGIN")
                    finishers: list[Finish] = [fn(conn) for _, fn, _ in writes]
                    conn.execute("COMMIT")
                values = [finish() for finish in finishers]
                results = [(job[2], True, v) for job, v in zip(writes, values, strict=True)]
            except Exception:
                if conn.broken or conn.closed:
                    raise
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    conn.execute("ROLLBACK")
                results = self._one_by_one(conn, writes)
            self.commits += 1
            self.writes += len(writes)
        except Exception as error:
            _drop_if_lost(conn, error)
            failed = WorkflowInternalError(f"store commit failed: {error}")
            results = [(future, False, failed) for _, _, future in writes]
        return results

    def _one_by_one(
        self, conn: Conn, writes: list[Job]
    ) -> list[tuple[asyncio.Future[Any], bool, Any]]:
        """The group again in one transaction, each write in a savepoint: a bad one fails alone."""
        results: list[tuple[asyncio.Future[Any], bool, Any]] = []
        with conn.transaction():
            for _, fn, future in writes:
                try:
                    with conn.transaction():  # a savepoint
                        value = fn(conn)()
                except Exception as error:
                    if conn.broken or conn.closed:
                        raise
                    results.append((future, False, _internal(error)))
                else:
                    results.append((future, True, value))
        return results

    def _read(self, fn: Callable[[Conn], T]) -> asyncio.Future[T]:
        """A read: ``fn`` runs on the thread and its value is the answer."""
        return self._enqueue(False, fn)

    def _write(self, fn: Callable[[Conn], Callable[[], T]]) -> asyncio.Future[T]:
        """A write: ``fn`` sends its statements (maybe pipelined with others) and returns
        what, once their results are in, checks them and makes the answer."""
        return self._enqueue(True, fn)

    # -- writes ------------------------------------------------------------------------

    def commit(self, tx: Tx) -> asyncio.Future[list[LogRecord]]:
        return self._write(lambda conn: _apply(conn, tx, self.node))

    async def create(
        self, rows: list[InstanceRow], logs: list[LogEntry], *, skip_existing: bool
    ) -> tuple[list[bool], list[LogRecord]]:
        lease = self.lease if self.node is not None else None
        return await self._write(
            lambda conn: _create(conn, rows, logs, skip_existing, node=self.node, lease=lease)
        )

    # -- several dispatchers (node mode) -------------------------------------------------
    # Not used by the engine yet: see POSTGRES-2 in team/engine-findings.md. Every write of a
    # store with a node id is fenced: it commits only while this node holds the instance.

    def _node(self) -> str:
        if self.node is None:
            raise WorkflowInternalError("leases need a store opened with a node id")
        return self.node

    async def claim(self, limit: int, horizon: float | None = None) -> list[InstanceRow]:
        """Take up to ``limit`` unfinished instances nobody holds (or whose holder's lease ran
        out), due by ``horizon`` (engine clock; None: any), oldest first. Rows another node
        is claiming at the same moment are skipped, never waited for."""
        args = (self._node(), self.lease, horizon, horizon, int(limit))

        def send(conn: Conn) -> Callable[[], list[InstanceRow]]:
            cursor = conn.execute(_CLAIM, args)
            return lambda: sorted(map(instance_row, cursor.fetchall()), key=lambda r: r.created)

        return await self._write(send)

    async def renew(self) -> set[str]:
        """Extend every lease this node still holds; the uids it no longer holds are lost
        (drop them without writing: another node replays them)."""
        args = (self.lease, self._node())

        def send(conn: Conn) -> Callable[[], set[str]]:
            cursor = conn.execute(
                "UPDATE instances SET lease_until = dynwf_now() + %s WHERE owner = %s "
                "AND lease_until > dynwf_now() RETURNING uid",
                args,
            )
            return lambda: {str(r[0]) for r in cursor.fetchall()}

        return await self._write(send)

    async def release(self, uids: Iterable[str]) -> None:
        """Let go of instances (hibernated or finished): any node may claim them when due."""
        args = (list(uids), self._node())

        def send(conn: Conn) -> Callable[[], None]:
            conn.execute(
                "UPDATE instances SET owner = NULL, lease_until = NULL "
                "WHERE uid = ANY(%s) AND owner = %s",
                args,
            )
            return lambda: None

        await self._write(send)

    def listen(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(uid)`` on the event loop whenever any node commits an event for
        ``uid`` (LISTEN/NOTIFY on a connection of its own)."""
        if self._loop is None or self._listener is not None:
            raise WorkflowInternalError("listen() needs an open store, once")
        ready = threading.Event()
        failed: list[Exception] = []
        self._stop_listening.clear()
        self._listener = threading.Thread(
            target=self._listen, args=(callback, ready, failed), name="dynwf-listen", daemon=True
        )
        self._listener.start()
        ready.wait()
        if failed:
            self._listener.join()
            self._listener = None
            raise _open_error(self.url, failed[0]) from failed[0]

    def _listen(
        self, callback: Callable[[str], None], ready: threading.Event, failed: list[Exception]
    ) -> None:
        try:
            conn = psycopg.connect(
                self.url, autocommit=True, application_name="dynamic-workflows-listen"
            )
            conn.execute("LISTEN dynwf")
        except Exception as error:
            failed.append(error)
            ready.set()
            return
        ready.set()
        loop = self._loop
        try:
            while not self._stop_listening.is_set():
                for note in conn.notifies(timeout=0.2):
                    if loop is not None and not loop.is_closed():
                        with contextlib.suppress(RuntimeError):
                            loop.call_soon_threadsafe(callback, note.payload)
        except psycopg.Error:
            pass  # the connection went away; the claim loop still finds due work
        finally:
            conn.close()

    # -- reads -------------------------------------------------------------------------

    async def get(self, uid: str) -> InstanceRow | None:
        def read(conn: Conn) -> InstanceRow | None:
            row = conn.execute(f"{_INSTANCE_SELECT} WHERE uid = %s", (uid,)).fetchone()
            return instance_row(row) if row else None

        return await self._read(read)

    async def find(self, workflow: str, scope: str, id: str) -> InstanceRow | None:
        def read(conn: Conn) -> InstanceRow | None:
            row = conn.execute(
                f"{_INSTANCE_SELECT} WHERE workflow = %s AND scope = %s AND id = %s",
                (workflow, scope, id),
            ).fetchone()
            return instance_row(row) if row else None

        return await self._read(read)

    async def load(self, uid: str) -> tuple[InstanceRow, list[StepRow]] | None:
        def read(conn: Conn) -> tuple[InstanceRow, list[StepRow]] | None:
            with conn.transaction():  # one snapshot for the row and its steps
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                row = conn.execute(f"{_INSTANCE_SELECT} WHERE uid = %s", (uid,)).fetchone()
                if row is None:
                    return None
                steps = conn.execute(
                    f"{_STEP_SELECT} WHERE uid = %s ORDER BY ord", (uid,)
                ).fetchall()
            return instance_row(row), [step_row(s) for s in steps]

        return await self._read(read)

    async def oldest_event(self, uid: str, type: str) -> EventRow | None:
        def read(conn: Conn) -> EventRow | None:
            row = conn.execute(
                "SELECT seq, type, payload, ts FROM events WHERE uid = %s AND type = %s "
                "AND consumed_by IS NULL ORDER BY seq LIMIT 1",
                (uid, type),
            ).fetchone()
            return EventRow(row[0], row[1], loads(row[2]), row[3]) if row else None

        return await self._read(read)

    async def oldest_waiter(self, uid: str, type: str, now: float) -> StepRow | None:
        def read(conn: Conn) -> StepRow | None:
            row = conn.execute(
                f"{_STEP_SELECT} WHERE uid = %s AND kind = 'event' AND state = 'waiting' "
                "AND event_type = %s AND wake_at > %s ORDER BY start NULLS FIRST, ord LIMIT 1",
                (uid, type, now),
            ).fetchone()
            return step_row(row) if row else None

        return await self._read(read)

    async def unfinished(self) -> list[InstanceRow]:
        def read(conn: Conn) -> list[InstanceRow]:
            rows = conn.execute(
                f"{_INSTANCE_SELECT} WHERE status IN "
                "('queued', 'running', 'waiting', 'waitingForPause') ORDER BY created, ord"
            ).fetchall()
            return [instance_row(r) for r in rows]

        return await self._read(read)

    async def list_instances(
        self,
        workflow: str | None,
        scope: str | None,
        status: str | None,
        limit: int,
        offset: int,
    ) -> list[InstanceRow]:
        where, args = filters(workflow, scope, status, placeholder="%s")

        def read(conn: Conn) -> list[InstanceRow]:
            rows = conn.execute(
                f"{_INSTANCE_SELECT}{where} ORDER BY created DESC, ord DESC LIMIT %s OFFSET %s",
                (*args, limit, offset),
            ).fetchall()
            return [instance_row(r) for r in rows]

        return await self._read(read)

    async def count_instances(
        self, workflow: str | None, scope: str | None, status: str | None
    ) -> int:
        where, args = filters(workflow, scope, status, placeholder="%s")

        def read(conn: Conn) -> int:
            sql = "SELECT count(*) FROM instances" + where  # noqa: S608 - fixed column names; values are bound
            row = conn.execute(sql, args).fetchone()
            return int(row[0]) if row else 0

        return await self._read(read)

    async def history(self, uid: str, after_seq: int = 0) -> list[LogRecord]:
        def read(conn: Conn) -> list[LogRecord]:
            rows = conn.execute(
                "SELECT seq, uid, instance_id, workflow, scope, ts, kind, step, data FROM log "
                "WHERE uid = %s AND seq > %s ORDER BY seq",
                (uid, after_seq),
            ).fetchall()
            return [log_record(r) for r in rows]

        return await self._read(read)


def _redact(url: str) -> str:
    """``url`` without its password."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{host}"


def _open_error(url: str, error: Exception) -> Exception:
    if isinstance(error, psycopg.Error):
        # psycopg's message names host and port, never the password; say which store failed.
        return WorkflowInternalError(f"cannot open the store {_redact(url)}: {error}")
    return error


def _drop_if_lost(conn: Conn, error: Exception) -> None:
    """Close a connection the server dropped (it may not know yet), so the next job reconnects."""
    if isinstance(error, psycopg.OperationalError) or conn.broken:
        with contextlib.suppress(Exception):
            conn.close()


def _internal(error: Exception) -> Exception:
    if isinstance(error, DuplicateInstanceError | WorkflowInternalError):
        return error
    if isinstance(error, psycopg.Error) and error.diag.sqlstate in (GONE, DUPLICATE, LEASE_LOST):
        message = error.diag.message_primary or ""
        if error.diag.sqlstate == DUPLICATE:
            return DuplicateInstanceError(message)
        if error.diag.sqlstate == LEASE_LOST:
            return LeaseLostError(message)
        return WorkflowInternalError(message)
    return WorkflowInternalError(f"store failure: {error}")


def _insert_log(conn: Conn, ident: Ident, entries: list[LogEntry]) -> Callable[[], list[LogRecord]]:
    """One INSERT for all lines. Identity values are drawn in VALUES order, so the sorted
    returned seqs belong to the entries in order."""
    if not entries:
        return list
    values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s)"] * len(entries))
    args: list[Any] = []
    for entry in entries:
        args += [
            ident.uid,
            ident.instance_id,
            ident.workflow,
            ident.scope,
            entry.ts,
            entry.kind,
            entry.step,
            dumps(entry.data),
        ]
    cursor = conn.execute(
        "INSERT INTO log (uid, instance_id, workflow, scope, ts, kind, step, data) "  # noqa: S608 - placeholders only
        f"VALUES {values} RETURNING seq",
        args,
    )
    return lambda: _records(ident, entries, sorted(int(r[0]) for r in cursor.fetchall()))


def _records(ident: Ident, entries: list[LogEntry], seqs: list[int]) -> list[LogRecord]:
    return [
        {
            "seq": seq,
            "uid": ident.uid,
            "instance_id": ident.instance_id,
            "workflow": ident.workflow,
            "scope": ident.scope,
            "ts": entry.ts,
            "kind": entry.kind,
            "step": entry.step,
            "data": entry.data,
        }
        for seq, entry in zip(seqs, entries, strict=True)
    ]


def _apply(conn: Conn, tx: Tx, node: str | None = None) -> Callable[[], list[LogRecord]]:
    """Send ``tx``'s statements without waiting for any result (they may be pipelined).
    With a ``node``, the first one fences the rest: it fails unless the node holds ``uid``."""
    uid = tx.ident.uid
    if node is not None:
        conn.execute(_FENCE, (uid, node, LEASE_LOST, f"node {node} no longer holds {uid}"))
    if tx.delete:
        for table in ("steps", "events", "log", "instances"):
            conn.execute(f"DELETE FROM {table} WHERE uid = %s", (uid,))  # noqa: S608
        records = _insert_log(conn, tx.ident, tx.log)
        conn.execute("DELETE FROM log WHERE uid = %s", (uid,))
        return records
    if tx.reset:
        conn.execute("DELETE FROM steps WHERE uid = %s", (uid,))
        conn.execute("DELETE FROM events WHERE uid = %s", (uid,))
    if tx.shift_timers:
        conn.execute(
            "UPDATE steps SET wake_at = wake_at + %s WHERE uid = %s AND wake_at IS NOT NULL "
            "AND state IN ('waiting', 'retrying')",
            (tx.shift_timers, uid),
        )
    if tx.steps:
        with conn.cursor() as cursor:
            cursor.executemany(
                _STEP_UPSERT,
                [
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
                    )
                    for step in tx.steps
                ],
            )
    if tx.consume_event is not None:
        seq, key = tx.consume_event
        conn.execute(
            "WITH hit AS (UPDATE events SET consumed_by = %s WHERE seq = %s AND uid = %s "
            "AND consumed_by IS NULL RETURNING 1) "
            "SELECT dynwf_expect((SELECT count(*) FROM hit), 1, %s, %s)",
            (key, seq, uid, GONE, f"event {seq} was already consumed"),
        )
    if tx.add_event is not None:
        event = tx.add_event
        conn.execute(
            "INSERT INTO events (uid, type, payload, ts, consumed_by) VALUES (%s, %s, %s, %s, %s)",
            (uid, event.type, dumps(event.payload), event.ts, event.consumed_by),
        )
        if node is not None:  # delivered to listeners only if this commits
            conn.execute("SELECT pg_notify('dynwf', %s)", (uid,))
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
        assignments = ", ".join(f"{c} = %s" for c in columns)
        conn.execute(
            f"WITH hit AS (UPDATE instances SET {assignments} WHERE uid = %s RETURNING 1) "  # noqa: S608
            "SELECT dynwf_expect((SELECT count(*) FROM hit), 1, %s, %s)",
            (*values, uid, GONE, f"instance {uid} is gone"),
        )
    return _insert_log(conn, tx.ident, tx.log)


def _create(
    conn: Conn,
    rows: list[InstanceRow],
    logs: list[LogEntry],
    skip: bool,
    *,
    node: str | None = None,
    lease: float | None = None,
) -> Callable[[], tuple[list[bool], list[LogRecord]]]:
    """One statement per instance: insert it unless its id is taken, and its log line only
    if it was inserted; a taken id fails the statement (and the whole call) unless ``skip``."""
    sql = _CREATE_SKIP if skip else _CREATE_STRICT
    sent = []
    for row, entry in zip(rows, logs, strict=True):
        args: list[Any] = [
            row.uid,
            row.workflow,
            row.scope,
            row.id,
            dumps(row.params),
            None if row.envelope is None else dumps(row.envelope),
            row.status,
            row.created,
            row.updated,
            node,
            lease,
            row.id,
            row.workflow,
            row.scope,
            entry.ts,
            entry.kind,
            entry.step,
            dumps(entry.data),
        ]
        if not skip:
            args += [DUPLICATE, row.id]
        sent.append((row, entry, conn.execute(sql, args)))

    def finish() -> tuple[list[bool], list[LogRecord]]:
        inserted: list[bool] = []
        records: list[LogRecord] = []
        for row, entry, cursor in sent:
            found = cursor.fetchone()
            seq = None if found is None else found[0]
            inserted.append(seq is not None)
            if seq is not None:
                ident = Ident(row.uid, row.id, row.workflow, row.scope)
                records += _records(ident, [entry], [int(seq)])
        return inserted, records

    return finish

"""Every table of the PostgreSQL store, as numbered migrations and a version table.

The same tables as the SQLite store (``_schema.py``), in PostgreSQL's dialect. JSON values
are ``text``, not ``jsonb``: the store must hand back exactly what the engine gave it (jsonb
reorders keys and refuses ``\\u0000``). ``ord`` columns stand in for SQLite's ``rowid``
(insertion order of steps and instances). Migrations only append; each runs in its own
transaction with the version bump, under an advisory lock so that several processes opening
one database at once apply each migration exactly once.
"""

from __future__ import annotations

from typing import Any

MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE instances (
                uid text PRIMARY KEY,
                ord bigint GENERATED ALWAYS AS IDENTITY,
                workflow text NOT NULL,
                scope text NOT NULL,
                id text NOT NULL,
                params text NOT NULL,
                envelope text,
                status text NOT NULL,
                output text,
                error text,
                created double precision NOT NULL,
                updated double precision NOT NULL,
                paused_at double precision,
                wake_at double precision,
                UNIQUE (workflow, scope, id)
            )""",
            "CREATE INDEX instances_status ON instances (status)",
            "CREATE INDEX instances_created ON instances (created DESC, ord DESC)",
            """CREATE TABLE steps (
                uid text NOT NULL,
                key text NOT NULL,
                ord bigint GENERATED ALWAYS AS IDENTITY,
                name text NOT NULL,
                count integer NOT NULL,
                kind text NOT NULL,
                state text NOT NULL,
                attempts integer NOT NULL DEFAULT 0,
                config text,
                start double precision,
                "end" double precision,
                wake_at double precision,
                value text,
                error text,
                event_type text,
                PRIMARY KEY (uid, key)
            )""",
            "CREATE INDEX steps_order ON steps (uid, ord)",
            """CREATE TABLE events (
                seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                uid text NOT NULL,
                type text NOT NULL,
                payload text NOT NULL,
                ts double precision NOT NULL,
                consumed_by text
            )""",
            "CREATE INDEX events_pending ON events (uid, type, seq) WHERE consumed_by IS NULL",
            "CREATE INDEX events_uid ON events (uid)",
            """CREATE TABLE log (
                seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                uid text NOT NULL,
                instance_id text NOT NULL,
                workflow text NOT NULL,
                scope text NOT NULL,
                ts double precision NOT NULL,
                kind text NOT NULL,
                step text,
                data text NOT NULL
            )""",
            "CREATE INDEX log_uid ON log (uid, seq)",
        ],
    ),
    (
        2,
        [
            # A write's checks run on the server, so a whole group commits in one round trip:
            # a failed check aborts the transaction with a SQLSTATE the store maps back.
            """CREATE FUNCTION dynwf_expect(n bigint, expected bigint, code text, message text)
            RETURNS void LANGUAGE plpgsql AS $$
            BEGIN
                IF n <> expected THEN
                    RAISE EXCEPTION USING ERRCODE = code, MESSAGE = message;
                END IF;
            END $$""",
        ],
    ),
    (
        3,
        [
            # Several dispatchers on one database (used only when a store has a node id):
            # the node holding an instance and until when (server clock, epoch seconds).
            "ALTER TABLE instances ADD COLUMN owner text, ADD COLUMN lease_until double precision",
            "CREATE INDEX instances_unfinished ON instances (created, ord) "
            "WHERE status IN ('queued', 'running', 'waiting', 'waitingForPause')",
            """CREATE FUNCTION dynwf_now() RETURNS double precision LANGUAGE sql VOLATILE AS
            $$ SELECT extract(epoch FROM clock_timestamp())::double precision $$""",
        ],
    ),
]

GONE = "DWF01"  # SQLSTATE: the row a write needs is gone (instance deleted, event consumed)
DUPLICATE = "DWF02"  # SQLSTATE: the instance id is in use (message: the id)
LEASE_LOST = "DWF03"  # SQLSTATE: this node no longer holds the instance it writes

LATEST = MIGRATIONS[-1][0]
LOCK_KEY = 0x64796E7766  # "dynwf": the advisory lock that serialises migrations

VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)"


def current_version(conn: Any) -> int:
    """The schema version of the database behind ``conn`` (a psycopg connection)."""
    row = conn.execute(
        "SELECT max(version) FROM schema_version"
        if conn.execute("SELECT to_regclass('schema_version')").fetchone()[0]
        else "SELECT 0"
    ).fetchone()
    return int(row[0] or 0)


def migrate(conn: Any) -> int:
    """Bring the schema to :data:`LATEST`; return the version found before.

    ``conn`` is a psycopg connection in autocommit mode."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        conn.execute(VERSION_TABLE)
        found = current_version(conn)
    if found > LATEST:
        raise RuntimeError(
            f"the store has schema version {found}, newer than this code knows ({LATEST})"
        )
    for version, statements in MIGRATIONS:
        if version <= found:
            continue
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            if current_version(conn) >= version:  # another process got there first
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
    return found

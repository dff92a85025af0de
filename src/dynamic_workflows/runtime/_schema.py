"""Every table of the SQLite store, as numbered migrations and a version table.

Migrations only append: a database created by any earlier version is brought forward by
running the ones it lacks, each in its own transaction with the version bump.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE instances (
                uid TEXT PRIMARY KEY,
                workflow TEXT NOT NULL,
                scope TEXT NOT NULL,
                id TEXT NOT NULL,
                params TEXT NOT NULL,
                envelope TEXT,
                status TEXT NOT NULL,
                output TEXT,
                error TEXT,
                created REAL NOT NULL,
                updated REAL NOT NULL,
                paused_at REAL,
                wake_at REAL,
                UNIQUE (workflow, scope, id)
            )""",
            "CREATE INDEX instances_status ON instances (status)",
            "CREATE INDEX instances_created ON instances (created)",
            """CREATE TABLE steps (
                uid TEXT NOT NULL,
                key TEXT NOT NULL,
                name TEXT NOT NULL,
                count INTEGER NOT NULL,
                kind TEXT NOT NULL,
                state TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                config TEXT,
                start REAL,
                "end" REAL,
                wake_at REAL,
                value TEXT,
                error TEXT,
                event_type TEXT,
                PRIMARY KEY (uid, key)
            )""",
            """CREATE TABLE events (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                uid TEXT NOT NULL,
                type TEXT NOT NULL,
                payload TEXT NOT NULL,
                ts REAL NOT NULL,
                consumed_by TEXT
            )""",
            "CREATE INDEX events_pending ON events (uid, type, seq) WHERE consumed_by IS NULL",
            """CREATE TABLE log (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                uid TEXT NOT NULL,
                instance_id TEXT NOT NULL,
                workflow TEXT NOT NULL,
                scope TEXT NOT NULL,
                ts REAL NOT NULL,
                kind TEXT NOT NULL,
                step TEXT,
                data TEXT NOT NULL
            )""",
            "CREATE INDEX log_uid ON log (uid, seq)",
        ],
    ),
]

LATEST = MIGRATIONS[-1][0]


def current_version(conn: sqlite3.Connection) -> int:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to :data:`LATEST`; return the version found before."""
    found = current_version(conn)
    if found > LATEST:
        raise RuntimeError(
            f"the store has schema version {found}, newer than this code knows ({LATEST})"
        )
    for version, statements in MIGRATIONS:
        if version <= found:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            if current_version(conn) >= version:  # another process got there first
                conn.execute("ROLLBACK")
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return found

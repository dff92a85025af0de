"""Rows as both stores read them back: the same columns, the same decoding.

The SQLite and PostgreSQL stores differ in SQL and in how they talk to their database, never
in what a row means; keeping the decoding here keeps them from drifting apart.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ._json import loads
from ._store import InstanceRow, LogRecord, StepRow


def settle(results: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in results:
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def instance_row(row: Any) -> InstanceRow:
    return InstanceRow(
        uid=row[0],
        workflow=row[1],
        scope=row[2],
        id=row[3],
        params=loads(row[4]),
        envelope=loads(row[5]),
        status=row[6],
        output=loads(row[7]),
        error=loads(row[8]),
        created=row[9],
        updated=row[10],
        paused_at=row[11],
        wake_at=row[12],
    )


def step_row(row: Any) -> StepRow:
    return StepRow(
        key=row[0],
        name=row[1],
        count=row[2],
        kind=row[3],
        state=row[4],
        attempts=row[5],
        config=loads(row[6]),
        start=row[7],
        end=row[8],
        wake_at=row[9],
        value=loads(row[10]),
        error=loads(row[11]),
        event_type=row[12],
    )


def log_record(row: Any) -> LogRecord:
    return {
        "seq": row[0],
        "uid": row[1],
        "instance_id": row[2],
        "workflow": row[3],
        "scope": row[4],
        "ts": row[5],
        "kind": row[6],
        "step": row[7],
        "data": loads(row[8]),
    }


def filters(
    workflow: str | None, scope: str | None, status: str | None, *, placeholder: str
) -> tuple[str, tuple[Any, ...]]:
    """The WHERE clause of an instance listing, in the driver's placeholder style."""
    clauses: list[str] = []
    args: list[Any] = []
    for column, value in (("workflow", workflow), ("scope", scope), ("status", status)):
        if value is not None:
            clauses.append(f"{column} = {placeholder}")
            args.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(args)
